"""canet.losses."""
