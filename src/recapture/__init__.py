"""recapture: server-side collection, identity resolution and abandonment recovery for Shopify + Klaviyo."""

__version__ = "0.1.0"
