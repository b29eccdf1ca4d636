"""anonymizers/geo."""
