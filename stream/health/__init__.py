"""stream/health."""
