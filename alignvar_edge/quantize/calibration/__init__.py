"""Calibration data: LR tiles degraded like the training data, cut to the engine tile."""
from __future__ import annotations

from alignvar_edge.quantize.calibration.sets import CalibrationSet, TileSplit

__all__ = ["CalibrationSet", "TileSplit"]
