"""The parameters of a tiling run: everything that decides a slide's coords.

They are stored with each slide's output (as JSON) so that a rerun can tell a finished slide, made with the same
parameters, from one to redo.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from infbrush.data.tissue import TissueParams
from infbrush.errors import InfbrushError


@dataclass(frozen=True)
class TilingParams:
    """Everything that decides a slide's coords (stored with the output to make resume safe)."""

    patch_size: int = 256
    overlap: int = 0  # px at the target resolution shared by neighbours (TRIDENT's --overlap; CLAM: size - step)
    target_mpp: float | None = 1.0  # None: the slide's own resolution (level 0, or ``level``)
    level: int | None = None  # with target_mpp None: tile at this pyramid level's resolution (None = 0)
    mpp: float | None = None  # level-0 µm/px of every slide, overriding their metadata
    mask_max_side: int = 1024
    min_tissue_fraction: float = 0.5
    max_patches_per_slide: int = 0  # 0 = all
    seed: int = 0
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        if self.patch_size <= 0:
            raise InfbrushError(f"patch_size {self.patch_size}: must be > 0")
        if not 0 <= self.overlap < self.patch_size:
            raise InfbrushError(f"overlap {self.overlap}: must be ≥ 0 and below patch_size {self.patch_size}")
        if self.target_mpp is not None and not self.target_mpp > 0:
            raise InfbrushError(f"target_mpp {self.target_mpp}: must be > 0 (or native)")
        if self.mpp is not None and not self.mpp > 0:
            raise InfbrushError(f"mpp {self.mpp}: must be > 0")
        if self.level is not None and (self.level < 0 or self.target_mpp is not None):
            raise InfbrushError(f"level {self.level}: must be ≥ 0 and given without target_mpp")

    def to_json(self, slide_mpp: float | None = None) -> str:
        """The parameters as JSON; ``slide_mpp`` (a per-slide MPP override) is part of what made the coords."""
        data = asdict(self)
        if not data["overlap"]:
            del data["overlap"]  # coords tiled before overlaps existed stay done (no re-tiling of a cohort)
        if slide_mpp is not None:
            data["slide_mpp"] = slide_mpp
        return json.dumps(data, sort_keys=True)
