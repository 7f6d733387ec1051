"""The accuracy harness: journeys with ground truth, driven through the service's HTTP API."""
