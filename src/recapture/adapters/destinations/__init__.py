"""Destinations: the email platforms recapture delivers to (Klaviyo), and a faithful fake of Klaviyo for tests."""
