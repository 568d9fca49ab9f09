"""The brush (issue 16): paint conditions into regions of one image — condition maps, legends, region-aware
denoising (``RegionDenoiser``) and the MultiDiffusion-style baseline (``MultiDiffusionDenoiser``)."""
from infbrush.brush.legend import Legend, RegionSpec, load_legend, parse_legend
from infbrush.brush.maps import ConditionMap, RegionWeights, parse_blend, read_map, region_index
from infbrush.brush.model import MultiDiffusionDenoiser, RegionCondition, RegionDenoiser
from infbrush.brush.run import Painting, paint, prepare

__all__ = ["Legend", "RegionSpec", "load_legend", "parse_legend", "ConditionMap", "RegionWeights", "parse_blend",
           "read_map", "region_index", "MultiDiffusionDenoiser", "RegionCondition", "RegionDenoiser", "Painting",
           "paint", "prepare"]
