"""anonymizers/stats."""
