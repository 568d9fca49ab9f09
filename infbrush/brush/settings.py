"""Defaults of the brush's evaluation, written once (torch-free, so the commands read them when they parse).

Sampling defaults (DDIM steps, chunk size, seed) are the sampler's own (``infbrush.sample.run``); the judge's
feature size is the control judge's (``infbrush.evaluate.control``).
"""
from __future__ import annotations

EVAL_SEEDS: tuple[int, ...] = (0, 1, 2, 3)  # images per method: ours, the per-region baseline, single-condition
CROP_FRACTION = 0.25                        # judge crop side / image side (the judge is fit on real crops of it)
MARGIN_FRACTION = 0.05                      # crops stay this fraction of the side away from other regions
CROPS_PER_REGION = 4                        # per image, spread out inside each region
JUDGE_SEED = 0                              # seed of the crop judge (random forest) and its real crops
