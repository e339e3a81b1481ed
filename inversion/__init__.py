"""inversion: StyleGAN inversion encoders (pSp / e4e / ReStyle) and encoder-seeded refinement."""

from .build import build_inverter
from .checkpoints import load_inverter, save_inverter
from .inverter import InversionResult, Inverter
from .models import CheckpointError, Generator, demo_generator, load_generator
from .refine import load_tuned, save_tuned
from .style_mixing import multimodal
from .tasks import InputSpec

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Generator",
    "InputSpec",
    "InversionResult",
    "Inverter",
    "build_inverter",
    "demo_generator",
    "load_generator",
    "load_inverter",
    "load_tuned",
    "multimodal",
    "save_inverter",
    "save_tuned",
    "__version__",
]
