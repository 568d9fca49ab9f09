"""Data stages: demo world, WSI tiling, GeoTIFF patching, dataset adapters and the image store."""
