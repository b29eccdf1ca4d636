"""stream/local."""
