"""Datasets and fixed benchmark splits (pSp's image-to-image task transforms: :mod:`.task_transforms`)."""

from .folder import IMAGE_EXTENSIONS, ImageIdDataset, collate_skip_none, id_candidates, read_rgb
from .generated import SeedDataset, render_seeds
from .paired import PairedDataset
from .prepare import PreparedDataset, prepare_dataset
from .sampler import EpochSeededSampler
from .splits import derive_celebahq_splits, ids_sha256, read_split, split_path, splits_dir, write_split

__all__ = [
    "EpochSeededSampler",
    "IMAGE_EXTENSIONS",
    "ImageIdDataset",
    "PairedDataset",
    "PreparedDataset",
    "SeedDataset",
    "collate_skip_none",
    "derive_celebahq_splits",
    "id_candidates",
    "ids_sha256",
    "prepare_dataset",
    "read_rgb",
    "read_split",
    "render_seeds",
    "split_path",
    "splits_dir",
    "write_split",
]
