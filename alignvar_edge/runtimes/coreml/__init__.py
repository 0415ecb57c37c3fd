"""Core ML backend: the build step and runner (backend.py)."""
