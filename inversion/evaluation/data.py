"""The evaluation's images: the split's ids, the dataset an ``eval_data.dataset`` spec builds, and the pairs
(encoder input, protocol target) every image becomes.

``eval_data.dataset`` is a Hydra ``_target_`` spec of a dataset whose items are ``{"image": [3, H, W] in [-1, 1],
"id": str}`` (:class:`inversion.data.ImageIdDataset`, :class:`inversion.data.SeedDataset`). The evaluation adds
the split's ids (after ``limit``) as the target's ``ids`` argument (``seeds`` for a target that takes seeds) and,
when the target takes a ``generator``, the checkpoint's generator.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch.utils.data import Dataset

from ..data import read_split
from ..imageio import quantize, resize_images
from .settings import EvalData, Protocol

__all__ = ["DATASET_KINDS", "PairDataset", "Views", "build_dataset", "dataset_kind", "needs_generator", "split_ids"]

#: metrics.json's ``data.kind`` for the datasets the shipped eval_data configs use (others: their _target_).
DATASET_KINDS = {"inversion.data.SeedDataset": "seeds", "inversion.data.generated.SeedDataset": "seeds",
                 "inversion.data.ImageIdDataset": "folder", "inversion.data.folder.ImageIdDataset": "folder"}
ID_PARAMETERS = ("ids", "seeds")


def split_ids(data: EvalData, limit: int | None = None) -> list[str]:
    """The split's ids (``data_splits/<split>.txt`` or a file path), the first ``limit`` of them when given."""
    ids = read_split(data.split)
    ids = ids[:limit] if limit is not None else ids
    if not ids:
        raise ValueError(f"split {data.split!r} has no ids")
    return ids


def dataset_kind(spec: Mapping[str, Any]) -> str:
    """``seeds`` / ``folder`` for the known dataset targets, else the ``_target_`` itself."""
    target = str(spec["_target_"])
    return DATASET_KINDS.get(target, target)


def _parameters(spec: Mapping[str, Any]) -> Mapping[str, inspect.Parameter]:
    try:
        factory = instantiate(dict(spec), _partial_=True)
    except InstantiationException as err:
        raise ValueError(f"eval_data.dataset._target_={spec['_target_']!r}: {err}") from err
    return inspect.signature(factory.func).parameters


def needs_generator(spec: Mapping[str, Any]) -> bool:
    """Whether the dataset's target takes the checkpoint's generator (then it is built after loading it)."""
    return "generator" in _parameters(spec)


def build_dataset(spec: Mapping[str, Any], ids: list[str], generator: torch.nn.Module | None = None) -> Dataset:
    """The dataset of ``spec`` over ``ids`` (see the module docstring); its own errors (e.g. every missing image
    id of a folder, at once) pass through unchanged."""
    params = _parameters(spec)
    name = next((p for p in ID_PARAMETERS if p in params), None)
    if name is None:
        raise ValueError(f"eval_data.dataset._target_={spec['_target_']!r} takes none of {list(ID_PARAMETERS)}: the "
                         "evaluation passes the split's ids as one of them")
    kwargs: dict[str, Any] = {name: ids}
    if "generator" in params:
        if generator is None:
            raise ValueError(f"eval_data.dataset._target_={spec['_target_']!r} needs the checkpoint's generator")
        kwargs["generator"] = generator
    return instantiate(dict(spec), _partial_=True)(**kwargs)


@dataclass(frozen=True)
class Views:
    """How one dataset image becomes the encoder input and the protocol target."""

    encoder_size: int | tuple[int, int]  # one side or (height, width)
    input_mode: str
    size: int | tuple[int, int]
    mode: str
    quantize: bool

    @classmethod
    def of(cls, encoder_size: int | tuple[int, int], data: EvalData, protocol: Protocol) -> Views:
        return cls(encoder_size, data.input_resize_mode, protocol.size, protocol.resize_mode, protocol.quantize)

    def to_protocol(self, images: torch.Tensor) -> torch.Tensor:
        """Generator images -> protocol-size, quantized images (how reconstructions are scored)."""
        return quantize(resize_images(images.float(), self.size, self.mode), self.quantize)

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = image[None].float()
        return {"input": resize_images(x, self.encoder_size, self.input_mode)[0], "target": self.to_protocol(x)[0]}


class PairDataset(Dataset):
    """Wrap a dataset of ``{"image", "id"}`` items into ``{"index", "id", "input", "target"}`` items."""

    def __init__(self, base: Dataset, views: Views):
        self.base = base
        self.views = views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        return {"index": i, "id": str(item["id"]), **self.views(item["image"])}
