"""stream/tables."""
