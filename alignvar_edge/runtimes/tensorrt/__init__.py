"""TensorRT backend: the build step and runner (backend.py) and the device build kit (kit.py)."""
