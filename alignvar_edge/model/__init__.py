"""AlignVAR in PyTorch: config + presets, VQ-VAE, resampling, transformer, SCA, HCC, checkpoints."""
from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.config import PRESETS, AlignVARConfig

__all__ = ["AlignVAR", "AlignVARConfig", "PRESETS"]
