"""OpenVINO backend: the build step and runner (backend.py)."""
from alignvar_edge.lazy import keep_openvino_local

keep_openvino_local()      # here: the toolkit imports openvino and nncf only from this package's modules

# the folder OpenVINO keeps compiled models in for every load that passes no cache_dir (a shell script
# that runs one `alignvar-edge` call per photo sets it once); read by the backend's `open` alone, named
# here so that the CLI's help and the engine README name it without loading the backend
CACHE_ENV = "ALIGNVAR_EDGE_CACHE_DIR"
