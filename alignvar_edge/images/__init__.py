"""Images in and out: files read as float32 HxWx3 RGB in [0, 1] plus an optional alpha plane, and
written back atomically with what they carried; in-memory arrays and PIL images likewise.

One module a job:
  formats      the extensions, the Pillow mode an image is upscaled in, a file's layout
  read         `load_image`: defensive decoding, 16 bits kept (with `sixteen_bit`)
  metadata     what an output carries beside its pixels (ICC, EXIF, XMP, DPI, PNG text)
  exif         a file's EXIF, read once, a damaged one named with its file
  write        `save_image` and the output-format rules (with `png16` for 16-bit PNGs)
  arrays       numpy / PIL / torch images as float planes and back
  folders      listing a folder's images, and reading one for figures or training
"""
from __future__ import annotations

from alignvar_edge.images.arrays import as_float_image, check_unit_range, from_tensor, to_tensor
from alignvar_edge.images.folders import list_images, result_path
from alignvar_edge.images.formats import IMAGE_EXTENSIONS, READ_EXTENSIONS, bits_per_sample, file_layout
from alignvar_edge.images.metadata import Metadata, file_metadata, file_profile
from alignvar_edge.images.read import DEFAULT_MAX_MEGAPIXELS, load_image
from alignvar_edge.images.write import (DEFAULT_QUALITY, QUALITY_FORMATS, FormatCannotHold, check_quality,
                                        output_format, quality_setting, save_image)

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "DEFAULT_QUALITY",
    "FormatCannotHold",
    "IMAGE_EXTENSIONS",
    "Metadata",
    "QUALITY_FORMATS",
    "READ_EXTENSIONS",
    "as_float_image",
    "bits_per_sample",
    "check_quality",
    "check_unit_range",
    "file_layout",
    "file_metadata",
    "file_profile",
    "from_tensor",
    "list_images",
    "load_image",
    "output_format",
    "quality_setting",
    "result_path",
    "save_image",
    "to_tensor",
]
