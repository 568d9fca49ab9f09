"""The embedded demo world (``infbrush demo-world``): synthetic inputs in the same file formats as the real ones.

``world`` lays out and writes the world (manifest, streams of seeds), ``tissue`` paints H&E-like slides and BACH-like
images with class maps, ``landcover`` paints a NAIP-like 4-band tile with its land cover, ``writers`` writes the
pyramidal TIFFs (Aperio SVS, generic tiled TIFF) and GeoTIFFs — also the slides the tests build.
"""
