"""inversion: StyleGAN inversion encoders (pSp / e4e / ReStyle) and encoder-seeded refinement."""

from .models import CheckpointError, Generator, demo_generator, load_generator

__version__ = "0.1.0"

__all__ = ["CheckpointError", "Generator", "demo_generator", "load_generator", "__version__"]
