"""Runnable examples of wiring audiosync into a backend (docs/INTEGRATION.md)."""
