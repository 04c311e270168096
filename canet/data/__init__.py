"""canet.data."""
