"""Sampling at any size: conditions → DDIM in function space → PNG or progressive pyramidal TIFF + index.json."""
from infbrush.sample.conditions import SampleSpec, from_held_out, from_labels, from_text, unconditional
from infbrush.sample.outputs import SampleIndex, choose_format, read_index, write_image
from infbrush.sample.run import load_weights, sample_resolution
from infbrush.sample.tiff import PyramidInfo, PyramidOptions, write_pyramid_tiff

__all__ = ["SampleSpec", "from_held_out", "from_labels", "from_text", "unconditional", "SampleIndex",
           "choose_format", "read_index", "write_image", "load_weights", "sample_resolution", "PyramidInfo",
           "PyramidOptions", "write_pyramid_tiff"]
