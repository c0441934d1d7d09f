"""Local development helpers for audiosync (not shipped to production)."""
