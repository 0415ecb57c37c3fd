"""OpenVINO backend: the build step and runner (backend.py)."""
from alignvar_edge.lazy import keep_openvino_local

keep_openvino_local()      # here: the toolkit imports openvino and nncf only from this package's modules
