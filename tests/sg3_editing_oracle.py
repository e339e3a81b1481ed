"""Test oracle: the inference path of ``yuval-alaluf/stylegan3-editing`` (ReStyle-pSp / ReStyle-e4e over StyleGAN3),
written from the logic of their ``inversion/models/psp3.py`` / ``e4e3.py`` (``load_weights``, ``forward``) and
``utils/inference_utils.py`` (``get_average_image``, ``run_on_batch``), independently of
:class:`inversion.inverter.Inverter` and of :mod:`inversion.checkpoints`.

The caller supplies the networks the way their code builds them before loading: an encoder of the right class and a
decoder built from a *known* configuration (theirs: ``SG3Generator(checkpoint_path=None).decoder``, always R-1024).
Decoder forwards use :class:`inversion.models.stylegan3.StyleGAN3Generator` (verified against NVIDIA's code
elsewhere); it keeps NVIDIA's unbatched ``[3, 3]`` transform buffer, so the batch of identical identity matrices
that their ``forward`` assigns is set as its one ``[3, 3]`` matrix.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torch import nn


def make_transform(translate: tuple[float, float], angle: float) -> np.ndarray:
    """``utils/common.py:make_transform`` (angle in degrees)."""
    m = np.eye(3)
    s, c = np.sin(angle / 360.0 * np.pi * 2), np.cos(angle / 360.0 * np.pi * 2)
    m[0][0], m[0][1], m[0][2] = c, s, translate[0]
    m[1][0], m[1][1], m[1][2] = -s, c, translate[1]
    return m


def get_identity_transform() -> np.ndarray:
    return np.linalg.inv(make_transform((0, 0), 0.0))


def _get_keys(d: dict, name: str, remove: tuple[str, ...] = ()) -> dict:
    """``pSp._get_keys``: entries under ``name.`` with the prefix stripped, minus ``remove``."""
    if "state_dict" in d:
        d = d["state_dict"]
    return {k[len(name) + 1:]: v for k, v in d.items() if k[:len(name)] == name and k[len(name) + 1:] not in remove}


class EditingNet(nn.Module):
    """Their ``pSp`` / ``e4e`` (identical forwards) after ``load_weights`` from a checkpoint."""

    def __init__(self, ckpt_path: str | pathlib.Path, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        # their torch.load(map_location='cpu') unpickles everything; weights_only with the path classes is enough
        with torch.serialization.safe_globals([pathlib.PosixPath]):
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        self.encoder = encoder
        self.encoder.load_state_dict(_get_keys(ckpt, "encoder"), strict=True)
        self.decoder = decoder
        result = self.decoder.load_state_dict(_get_keys(ckpt, "decoder", remove=("synthesis.input.transform",)),
                                              strict=False)
        # strict=False there; the oracle checks that only the skipped transform stayed unloaded
        assert list(result.missing_keys) == ["synthesis.input.transform"] and not result.unexpected_keys, result
        self.latent_avg = ckpt["latent_avg"] if "latent_avg" in ckpt else None
        self.face_pool = nn.AdaptiveAvgPool2d((256, 256))

    def _set_transform(self, batch: int) -> None:
        identity = torch.from_numpy(get_identity_transform()).unsqueeze(0).repeat(batch, 1, 1).float()
        assert torch.equal(identity, identity[:1].expand_as(identity))
        self.decoder.synthesis.input.transform.copy_(identity[0])

    def forward(self, x, latent=None, resize=True, input_code=False, return_latents=False):
        if input_code:
            codes = x
        else:
            codes = self.encoder(x)
            if x.shape[1] == 6 and latent is not None:
                codes = codes + latent  # residual step: w.r.t. the previous iteration
            else:
                codes = codes + self.latent_avg.repeat(codes.shape[0], 1, 1)  # first step: w.r.t. latent_avg
        self._set_transform(x.shape[0])
        images = self.decoder.synthesis(codes, noise_mode="const", force_fp32=True)
        if resize:
            images = self.face_pool(images)
        return (images, codes) if return_latents else images


def get_average_image(net: EditingNet, num_styles: int = 16) -> torch.Tensor:
    """``latent_avg`` repeated to the 16 styles, rendered and pooled (default ``resize=True``): [3, 256, 256]."""
    avg_image = net(net.latent_avg.repeat(num_styles, 1).unsqueeze(0), input_code=True, return_latents=False)[0]
    return avg_image.float().detach()


def run_on_batch(inputs: torch.Tensor, net: EditingNet, n_iters_per_batch: int, avg_image: torch.Tensor,
                 resize_outputs: bool = False) -> tuple[dict, dict]:
    """``run_on_batch`` without landmark transforms: per sample, every iteration's image and latent."""
    results_batch = {idx: [] for idx in range(inputs.shape[0])}
    results_latent = {idx: [] for idx in range(inputs.shape[0])}
    y_hat, latent = None, None
    for it in range(n_iters_per_batch):
        if it == 0:
            x_input = torch.cat([inputs, avg_image.unsqueeze(0).repeat(inputs.shape[0], 1, 1, 1)], dim=1)
        else:
            x_input = torch.cat([inputs, y_hat], dim=1)
        y_hat, latent = net.forward(x_input, latent=latent, return_latents=True, resize=resize_outputs)
        for idx in range(inputs.shape[0]):
            results_batch[idx].append(y_hat[idx])
            results_latent[idx].append(latent[idx].cpu().numpy())
        y_hat = net.face_pool(y_hat)  # back to 256 for the next iteration
    return results_batch, results_latent
