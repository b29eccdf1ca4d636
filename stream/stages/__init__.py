"""stream/stages."""
