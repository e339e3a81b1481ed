"""Test oracle: the inference path of ``eladrich/pixel2style2pixel`` for its image-to-image task models, written from
the logic of ``models/psp.py`` (``pSp.load_weights`` from a checkpoint, ``pSp.forward`` with ``input_code``,
``latent_mask``, ``inject_latent``, ``alpha``, ``resize``, ``randomize_noise``), ``scripts/style_mixing.py`` (the
multi-modal loop), ``configs/transforms_config.py`` + ``datasets/inference_dataset.py`` +
``datasets/augmentations.py`` (``transform_inference`` of sketches, segmentation maps and RGB images), independently
of :mod:`inversion.inverter`, :mod:`inversion.checkpoints`, :mod:`inversion.style_mixing` and :mod:`inversion.tasks`.

The caller supplies the networks the way ``pSp.__init__`` builds them before loading: an encoder with the file's
``input_nc`` and a decoder of the file's ``output_size``. The decoder is :class:`inversion.models.Generator`
(rosinality's layout and maths, verified bit-exact against rosinality elsewhere); rosinality's
``Generator([codes], input_is_latent, randomize_noise, return_latents)`` with one style is spelled out in
:meth:`PSPNet.decode`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch import nn


def get_keys(d: dict, name: str) -> dict:
    """``models/psp.py:get_keys``."""
    if "state_dict" in d:
        d = d["state_dict"]
    return {k[len(name) + 1:]: v for k, v in d.items() if k[:len(name)] == name}


class PSPNet(nn.Module):
    """``pSp(opts)`` with ``opts.checkpoint_path`` set, after the inference scripts' option defaults."""

    def __init__(self, ckpt_path, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        opts = dict(ckpt["opts"])
        opts.setdefault("learn_in_w", False)  # scripts/inference.py, style_mixing.py
        opts.setdefault("output_size", 1024)
        self.opts = opts
        self.n_styles = int(math.log(opts["output_size"], 2)) * 2 - 2
        self.encoder = encoder
        self.encoder.load_state_dict(get_keys(ckpt, "encoder"), strict=True)
        self.decoder = decoder
        # rosinality's Generator has no w_avg buffer: everything else must load
        result = self.decoder.load_state_dict(get_keys(ckpt, "decoder"), strict=False)
        assert list(result.missing_keys) == ["w_avg"] and not result.unexpected_keys, result
        assert self.decoder.num_ws == self.n_styles
        self.latent_avg = ckpt["latent_avg"] if "latent_avg" in ckpt else None
        self.face_pool = nn.AdaptiveAvgPool2d((256, 256))

    def decode(self, codes: torch.Tensor, input_is_latent: bool, randomize_noise: bool):
        """rosinality ``Generator.forward([codes], input_is_latent=..., randomize_noise=..., return_latents=True)``:
        z goes through ``style`` (no truncation); a single 2-d style is repeated to every layer."""
        styles = codes if input_is_latent else self.decoder.style(codes)
        latent = styles if styles.ndim == 3 else styles.unsqueeze(1).repeat(1, self.decoder.num_ws, 1)
        image = self.decoder.synthesis(latent, noise_mode="random" if randomize_noise else "const")
        return image, latent

    def forward(self, x, resize=True, latent_mask=None, input_code=False, randomize_noise=True,
                inject_latent=None, return_latents=False, alpha=None):
        if input_code:
            codes = x
        else:
            codes = self.encoder(x)
            if self.opts["start_from_latent_avg"]:
                if self.opts["learn_in_w"]:
                    codes = codes + self.latent_avg.repeat(codes.shape[0], 1)
                else:
                    codes = codes + self.latent_avg.repeat(codes.shape[0], 1, 1)
        if latent_mask is not None:
            for i in latent_mask:
                if inject_latent is not None:
                    if alpha is not None:
                        codes[:, i] = alpha * inject_latent[:, i] + (1 - alpha) * codes[:, i]
                    else:
                        codes[:, i] = inject_latent[:, i]
                else:
                    codes[:, i] = 0
        images, result_latent = self.decode(codes, input_is_latent=not input_code, randomize_noise=randomize_noise)
        if resize:
            images = self.face_pool(images)
        return (images, result_latent) if return_latents else images


def style_mixing(net: PSPNet, inputs: torch.Tensor, vecs: torch.Tensor, latent_mask, mix_alpha=None,
                 resize_outputs=False, randomize_noise=False, dtype=torch.float32):
    """``scripts/style_mixing.py``'s loop: per input image, per random vector ``vecs[image_idx]`` ([K, 512] there,
    ``np.random.randn``), the injected latent from ``net(z, input_code=True, return_latents=True)`` and the mixed
    output. The script leaves ``randomize_noise`` at True; ``False`` here makes it comparable. Inputs are cast to
    ``dtype`` (the script's ``.float()``; float64 for a float64 check). Returns the images
    [N, K, 3, R, R] and the mixed codes [N, K, num_ws, w_dim]."""
    images, codes = [], []
    for image_idx, input_image in enumerate(inputs):
        outs, lats = [], []
        for vec in vecs[image_idx]:
            _, latent_to_inject = net(vec.unsqueeze(0), input_code=True, return_latents=True,
                                      randomize_noise=randomize_noise)
            res, lat = net(input_image.unsqueeze(0).to(dtype), latent_mask=latent_mask,
                           inject_latent=latent_to_inject, alpha=mix_alpha, resize=resize_outputs,
                           randomize_noise=randomize_noise, return_latents=True)
            outs.append(res[0])
            lats.append(lat[0])
        images.append(torch.stack(outs))
        codes.append(torch.stack(lats))
    return torch.stack(images), torch.stack(codes)


# ----------------------------------------------------------------------------- transform_inference
def to_one_hot(a: np.ndarray, n_classes: int) -> np.ndarray:
    """``datasets/augmentations.py:ToOneHot``: [H, W] class indices -> int [H, W, n_classes] with a 1 at the index."""
    out = np.zeros(a.shape + (n_classes,), dtype=int)
    rows, cols = np.indices(a.shape)
    out[rows, cols, a] = 1
    return out


def inference_input(path, opts: dict) -> torch.Tensor:
    """``InferenceDataset.__getitem__`` with the task's ``transform_inference`` (``.float()`` as the scripts do):
    RGB (``label_nc == 0``) Resize + ToTensor + Normalize(0.5, 0.5); sketch (``label_nc == 1``) ``convert('L')``
    + Resize + ToTensor; segmentation ``convert('L')`` + Resize + ToOneHot(label_nc) + ToTensor."""
    label_nc = opts["label_nc"]
    im = Image.open(path)
    im = im.convert("RGB") if label_nc == 0 else im.convert("L")
    im = T.Resize((256, 256))(im)
    if label_nc == 0:
        return T.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])(T.ToTensor()(im)).float()
    if label_nc == 1:
        return T.ToTensor()(im).float()
    return T.ToTensor()(to_one_hot(np.array(im), label_nc)).float()


def face_pool(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, (256, 256))
