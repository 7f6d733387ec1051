"""Identity resolution: which person an event belongs to, from deterministic evidence, with guards."""
