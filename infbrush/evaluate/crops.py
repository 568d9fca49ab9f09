"""The Crop FID protocol: seeded random crops at native resolution.

The paper reports a "Crop FID" (fine detail) next to the CLIP FID (global structure) but gives neither
the crop size nor the number of crops per image. Our protocol (paper silent, chosen here):

* **Size** ``crop_size`` pixels square, taken at the image's native resolution (no resizing before the
  crop). For TCGA-BRCA 4096² at 20× we use 256², the patch size Graikos et al. train and evaluate their
  patch FID on at 20×, so our Crop FID measures detail at the scale their patch model sees. The demo uses
  crops of a quarter of its 256² (BRCA) / 128² (NAIP) images for the same ratio of crop to model input.
* **Placement** top-left corners drawn uniformly over all positions that keep the crop inside the image,
  independently per image, with ``numpy.random.default_rng([seed, set_tag, image_index])``: the crops of
  an image do not depend on which other images are evaluated or in what order, and real
  (``set_tag = 0``) and generated (``set_tag = 1``) sets use different streams of the same seed.
* **Number** ``crops_per_image`` crops per image (params ``evaluate.crops_per_image``). Each crop is then
  resized to Inception's 299² with clean-fid's "clean" resizer (PIL bicubic, float, no quantisation),
  exactly as clean-fid treats any image.

clean-fid estimates a 2048 × 2048 covariance, so a full-rank Crop FID needs more than 2048 crops per set
(number of images × crops per image). The demo sets are far smaller: there ``fid`` runs with
``--allow-rank-deficient`` and the KID (unbiased for any number of samples) is the meaningful number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from infbrush.errors import InfbrushError

REAL, GENERATED = 0, 1  # set tags: separate random streams for the two sets


@dataclass(frozen=True)
class CropProtocol:
    """Crop size (pixels, square, native resolution), crops per image and the base seed."""

    crop_size: int
    crops_per_image: int
    seed: int

    def to_dict(self) -> dict:
        return {**asdict(self), "placement": "uniform top-left per image, rng([seed, set_tag, image_index])",
                "set_tags": {"real": REAL, "generated": GENERATED},
                "resize": "clean-fid clean (PIL bicubic, float) to 299x299"}


def crop_corners(height: int, width: int, protocol: CropProtocol, image_index: int, set_tag: int) -> np.ndarray:
    """Top-left corners (K, 2) int64 as (y, x) of the ``K = crops_per_image`` crops of one image."""
    c = protocol.crop_size
    if c <= 0 or protocol.crops_per_image <= 0:
        raise InfbrushError(f"crop protocol needs crop_size > 0 and crops_per_image > 0, got {protocol}")
    if c > height or c > width:
        raise InfbrushError(f"crop size {c} does not fit in image {image_index} of size {height}x{width}")
    rng = np.random.default_rng([protocol.seed, set_tag, image_index])
    ys = rng.integers(0, height - c + 1, size=protocol.crops_per_image)
    xs = rng.integers(0, width - c + 1, size=protocol.crops_per_image)
    return np.stack([ys, xs], axis=1)  # (K, 2)


def random_crops(image: np.ndarray, protocol: CropProtocol, image_index: int, set_tag: int) -> np.ndarray:
    """The crops of one (H, W, C) image as (K, c, c, C), following :func:`crop_corners`."""
    c = protocol.crop_size
    corners = crop_corners(image.shape[0], image.shape[1], protocol, image_index, set_tag)
    return np.stack([image[y:y + c, x:x + c] for y, x in corners])  # (K, c, c, C)
