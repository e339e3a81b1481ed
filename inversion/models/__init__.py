"""StyleGAN generators and their checkpoint loaders."""

from .loading import demo_generator, demo_stylegan3, load_generator
from .state import CheckpointError
from .stylegan2 import Generator, mix_styles
from .stylegan2_cond import ConditionalGenerator
from .stylegan3 import StyleGAN3Generator

__all__ = ["CheckpointError", "ConditionalGenerator", "Generator", "StyleGAN3Generator", "demo_generator",
           "demo_stylegan3", "load_generator", "mix_styles"]
