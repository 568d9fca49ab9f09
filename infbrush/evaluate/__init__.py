"""Evaluation: CLIP FID / Crop FID with KID (clean-fid), zero-shot confusion, BACH downstream, the HTML report.

Modules: ``images`` (image sources), ``crops`` (the Crop FID protocol), ``extractors`` (Inception / CLIP
features), ``fid`` (statistics, distances, reference files), ``zeroshot``, ``bach``, ``report``.
"""
