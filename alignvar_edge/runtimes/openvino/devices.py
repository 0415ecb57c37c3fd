"""OpenVINO's device names and their kinds, apart from the backend so that the engine README and
the host's half-precision choice (runtimes/half.py) read them without loading the backend module."""
from __future__ import annotations

__all__ = ["DEVICE_KINDS", "HARDWARE_KINDS", "VIRTUAL_DEVICES", "device_kind"]

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO")        # they pick or combine hardware devices
DEVICE_KINDS = ("CPU", "GPU", "NPU", *VIRTUAL_DEVICES)
HARDWARE_KINDS = ("CPU", "GPU")                     # the ones that take INFERENCE_PRECISION_HINT


def device_kind(device: str | None) -> str:
    """The kind of an OpenVINO device name: 'GPU' for 'GPU.1', 'HETERO' for 'HETERO:GPU,CPU';
    'CPU' where none is named (OpenVINO's own default)."""
    return (device or "CPU").split(".")[0].split(":")[0].upper()
