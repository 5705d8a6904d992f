"""watchers."""
