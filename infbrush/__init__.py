"""infbrush: conditional diffusion in function space for very large images (the ∞-Brush paper), as a pipeline."""

__version__ = "0.1.0"
