"""Application services: use cases that combine the domain with ports (storage, clock), free of I/O details."""
