"""canet.inferers."""
