"""The accuracy harness: simulated shoppers with known identities, played to recapture over HTTP only.

`journeys` writes the ground truth, `driver` sends it and reads back attributions, `report` scores them, and
`cli.simulate` is the `recapture simulate` command. Nothing here imports the service's adapters, wiring or
application layers: the harness sees recapture exactly as a store and an operator do.
"""
