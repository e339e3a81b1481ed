"""Conditional StyleGAN2 (``c_dim > 0``): NVIDIA's label-conditioned mapping network on our StyleGAN2.

NVIDIA's ``MappingNetwork`` (stylegan2-ada-pytorch ``training/networks.py``, stylegan3
``training/networks_stylegan2.py``) with labels: ``embed`` is a plain equalized-lr linear layer
``c_dim -> embed_features`` (``embed_features`` = ``w_dim`` by default; lr multiplier 1, no activation), and the first
mapping layer reads
``cat([normalize_2nd_moment(z), normalize_2nd_moment(embed(c))], 1)``, so its inputs are ``z_dim + embed_features``.
The synthesis network does not see ``c``; truncation is toward the one ``w_avg`` (NVIDIA tracks it over the training
labels), as in NVIDIA's code.

:class:`ConditionalGenerator` is :class:`~inversion.models.stylegan2.Generator` with that mapping. Its state dict is the
unconditional one plus ``style.embed.weight`` ``[embed_features, c_dim]`` and ``style.embed.bias``, with ``style.1``
reading ``z_dim + embed_features`` features (NVIDIA: ``mapping.embed.*``, ``mapping.fc0``). Like
:class:`~inversion.models.stylegan3.StyleGAN3Generator`, its mapping is ``mapping(z, c=None, truncation_psi=...,
truncation_cutoff=...)`` and a missing ``c`` is an error; ``G.style(z, c)`` is the mapping without broadcast.
:func:`stylegan2_generator` builds the right class from keyword arguments (``c_dim`` 0 or absent: ``Generator``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .stylegan2 import EqualLinear, Generator, PixelNorm

__all__ = ["ConditionalGenerator", "ConditionalMapping", "require_unconditional", "stylegan2_generator"]


def _check_c(c: Any, n: int, c_dim: int) -> torch.Tensor:
    if c is not None and not isinstance(c, torch.Tensor):
        raise TypeError(f"c must be a tensor or None (the conditional StyleGAN2 mapping is (z, c, psi, cutoff)), "
                        f"got {c!r}")
    if c is None or tuple(c.shape) != (n, c_dim):
        raise ValueError(f"c must be [N, {c_dim}] labels for this conditional generator (c_dim={c_dim}), "
                         f"got {None if c is None else tuple(c.shape)}")
    return c


class ConditionalMapping(nn.Module):
    """``G.style`` of a conditional generator: ``style.0`` (2nd-moment normalisation), ``style.1 .. style.n_mlp``
    (equalized lr, bias + leaky ReLU(0.2) * sqrt(2)) and ``style.embed`` (linear ``c_dim -> embed_features``).
    ``forward(z, c)`` -> w [N, w_dim]."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, n_mlp: int, lr_mlp: float, embed_features: int):
        super().__init__()
        self.c_dim, self.n_mlp = c_dim, n_mlp
        self.add_module("0", PixelNorm())
        for i in range(n_mlp):
            in_dim = z_dim + embed_features if i == 0 else w_dim
            self.add_module(str(i + 1), EqualLinear(in_dim, w_dim, lr_mul=lr_mlp, activation=True))
        self.embed = EqualLinear(c_dim, embed_features)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        c = _check_c(c, z.shape[0], self.c_dim)
        norm = self._modules["0"]
        x = torch.cat([norm(z), norm(self.embed(c.to(z.dtype)))], dim=1)
        for i in range(1, self.n_mlp + 1):
            x = self._modules[str(i)](x)
        return x


class ConditionalGenerator(Generator):
    """StyleGAN2 with labels: :class:`Generator`'s synthesis, NVIDIA's conditional mapping (module docstring).

    ``mapping(z, c)`` gives ``ws``; ``synthesis(ws)`` images (``c`` is not needed there); calling the module does both.
    """

    def __init__(
        self,
        *,
        c_dim: int,  # Conditioning label (C) dimensionality, > 0.
        embed_features: int | None = None,  # Label embedding dimensionality, None = w_dim (NVIDIA's default).
        **kwargs: Any,  # Generator's keyword arguments (z_dim, w_dim, img_resolution, n_mlp, channels, lr_mlp, ...).
    ):
        if int(c_dim) < 1:
            raise ValueError(f"c_dim must be >= 1, got {c_dim} (an unconditional StyleGAN2 is Generator)")
        super().__init__(**kwargs)
        self.c_dim = int(c_dim)
        self.embed_features = self.w_dim if embed_features is None else int(embed_features)
        self.style = ConditionalMapping(self.z_dim, self.c_dim, self.w_dim, self.n_mlp,
                                        float(kwargs.get("lr_mlp", 0.01)), self.embed_features)

    def mapping(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] labels (required).
        truncation_psi: float = 1.0,  # 1 = no truncation, 0 = w_avg.
        truncation_cutoff: int | None = None,  # Truncate only layers < cutoff (None = all).
    ) -> torch.Tensor:
        """(Z, C) -> W, broadcast to ``ws`` [N, num_ws, w_dim], with optional truncation toward ``w_avg``."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        ws = self.style(z, c).unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, truncation_psi, truncation_cutoff) if truncation_psi != 1 else ws

    def compute_w_avg(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise ValueError(f"w_avg of a conditional generator (c_dim={self.c_dim}) depends on the label distribution "
                         "and is not estimated here: it comes from the file (NVIDIA's mapping.w_avg)")

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] labels (required).
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """(Z, C) -> images."""
        return self.synthesis(self.mapping(z, c, truncation_psi=truncation_psi), noise_mode=noise_mode)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, embed_features={self.embed_features}, " + super().extra_repr()


def stylegan2_generator(**kwargs: Any) -> Generator:
    """``ConditionalGenerator(**kwargs)`` when ``c_dim > 0``, else ``Generator(**kwargs)`` (``c_dim`` /
    ``embed_features`` dropped: the unconditional generator is exactly the one built without them)."""
    if int(kwargs.get("c_dim") or 0) > 0:
        return ConditionalGenerator(**kwargs)
    kwargs.pop("c_dim", None)
    kwargs.pop("embed_features", None)
    return Generator(**kwargs)


def require_unconditional(G: nn.Module, what: str, hint: str = "") -> None:
    """A ``ValueError`` naming ``what`` (and ``hint``, a way out) when ``G`` (StyleGAN2 or StyleGAN3) is conditional:
    ``what`` draws W codes from the mapping network of random z and has no labels to give it."""
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c_dim > 0:
        raise ValueError(f"{what} draws W codes from the mapping network of random z without labels, but this "
                         f"generator is conditional (c_dim={c_dim}; its mapping needs c [N, {c_dim}])"
                         + (f": {hint}" if hint else ""))
