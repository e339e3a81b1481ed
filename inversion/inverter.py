"""The one inversion loop: images -> latents -> reconstructions.

pSp / e4e / W-encoders are one pass (``ws = encoder(x) + latent_avg``); ReStyle iterates residual steps
(``ws_t = ws_{t-1} + encoder(cat(x, y_{t-1}))``, starting from ``latent_avg`` and its image). Training,
evaluation, refinement seeding and inference all call :meth:`Inverter.invert`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .imageio import RESIZE_MODES, as_hw, resize_images
from .models.state import normalize_latent_avg
from .models.stylegan2 import Generator
from .tasks import RGB, InputSpec

__all__ = ["AUTOCAST_DTYPES", "InversionResult", "InversionStep", "Inverter", ]

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
@dataclass
class InversionStep:
    """One step's latents ``ws`` [N, num_ws, w_dim], images at generator resolution, and the encoder output."""

    ws: torch.Tensor
    images: torch.Tensor | None  # None only for the last step of invert(..., render=False)
    delta: torch.Tensor


@dataclass
class InversionResult:
    """Final ``ws`` / ``images`` and every step (one entry for pSp / e4e)."""

    steps: list[InversionStep] = field(default_factory=list)

    @property
    def ws(self) -> torch.Tensor:
        return self.steps[-1].ws

    @property
    def images(self) -> torch.Tensor:
        return self.steps[-1].images


def _box(box: Sequence[int], resolution: int) -> tuple[int, int, int, int]:
    out = tuple(int(v) for v in box)
    if len(out) != 4 or not (0 <= out[0] < out[1] <= resolution and 0 <= out[2] < out[3] <= resolution):
        raise ValueError(f"content_box must be [top, bottom, left, right] inside the generator's {resolution}x"
                         f"{resolution} frame, got {list(box)}")
    return out


class Inverter(nn.Module):
    """Encoder + frozen generator, with the pSp/e4e single pass and the ReStyle iterative loop."""

    def __init__(
        self,
        *,
        encoder: nn.Module,  # Maps [N, C_in, S, S] to ws (or residuals) [N, num_ws, w_dim].
        generator: Generator,  # Frozen StyleGAN2.
        num_iters: int = 1,  # ReStyle steps; 1 for pSp / e4e.
        residual: bool = False,  # ReStyle: the encoder sees cat(x, y_prev) and predicts a residual.
        start_from_latent_avg: bool = True,  # Add latent_avg to the first step's encoder output.
        latent_avg: torch.Tensor | None = None,  # [w_dim], [1, w_dim] or [num_ws, w_dim]; default: generator.w_avg.
        encoder_size: int | Sequence[int] = 256,  # Resolution the encoder sees: one side or [height, width].
        content_box: Sequence[int] | None = None,  # [top, bottom, left, right] of the generator's frame that holds
        # the picture (e4e / ReStyle cars: 512x384 content in a 512x512 frame, [64, 448, 0, 512]); renders are
        # cropped to it before anything looks at them (outputs, ReStyle's feedback, losses). None: the whole frame.
        resize_mode: str = "adaptive_avg",  # How generator images are resized for the encoder.
        detach_steps: bool = True,  # ReStyle: no gradient across steps (each step gets its own loss).
        input_spec: InputSpec | None = None,  # What x is (pSp tasks: sketch / one-hot labels); default RGB [-1, 1].
    ):
        super().__init__()
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}; choose one of {RESIZE_MODES}")
        if num_iters < 1:
            raise ValueError(f"num_iters must be >= 1, got {num_iters}")
        if num_iters > 1 and not residual:
            raise ValueError("num_iters > 1 needs a residual (ReStyle) encoder: set residual=True")
        self.encoder = encoder
        self.generator = generator
        self.num_iters = num_iters
        self.residual = residual
        self.start_from_latent_avg = start_from_latent_avg
        self.encoder_size = encoder_size if isinstance(encoder_size, int) else [int(v) for v in encoder_size]
        self.encoder_hw = as_hw(encoder_size, "encoder_size")
        self.content_box = None if content_box is None else _box(content_box, generator.img_resolution)
        self.resize_mode = resize_mode
        self.detach_steps = detach_steps
        self.input_spec = RGB if input_spec is None else input_spec
        if residual and self.input_spec.mode != "rgb":
            raise ValueError(f"a residual (ReStyle) inverter reads RGB images, not {self.input_spec.mode!r} inputs")
        self.autocast: torch.dtype | None = None  # fast path (set_fast_path): the loop under torch.autocast
        self.channels_last = False  # fast path: encoder inputs in NHWC memory format
        G = generator
        latent_avg = normalize_latent_avg(G.w_avg if latent_avg is None else latent_avg, num_ws=G.num_ws,
                                          w_dim=G.w_dim, source="Inverter")
        self.register_buffer("latent_avg", latent_avg)
        self._avg_image: torch.Tensor | None = None

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def train(self, mode: bool = True) -> Inverter:
        """Only the encoder trains; the generator always stays in eval mode."""
        super().train(mode)
        self.generator.eval()
        return self

    def crop_content(self, images: torch.Tensor) -> torch.Tensor:
        """Generator renders [N, C, R, R] cropped to ``content_box`` (unchanged without one)."""
        if self.content_box is None:
            return images
        top, bottom, left, right = self.content_box
        return images[..., top:bottom, left:right]

    def avg_image(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``latent_avg``'s image at the encoder size, [1, 3, H, W] (ReStyle's first input); cached."""
        cached = self._avg_image
        if cached is None or cached.device != device or cached.dtype != dtype:
            with torch.no_grad():
                img = self.generator.synthesis(self.latent_avg[None].to(device), noise_mode="const")
                img = img.to(torch.promote_types(img.dtype, torch.float32))  # fp32 for low precision, fp64 kept
                cached = resize_images(self.crop_content(img), self.encoder_hw, self.resize_mode).to(dtype)
            self._avg_image = cached
        return cached

    def _load_from_state_dict(self, *args, **kwargs):  # a new latent_avg invalidates the cached image
        self._avg_image = None
        return super()._load_from_state_dict(*args, **kwargs)

    def set_fast_path(
        self,
        *,
        autocast: str | torch.dtype | None = None,  # "bfloat16" / "float16": run invert() under torch.autocast.
        channels_last: bool = False,  # Encoder weights and inputs in channels_last (NHWC) memory format.
        compile: str | None = None,  # torch.compile mode for the encoder and generator.synthesis ("default",
        # "reduce-overhead" = CUDA graphs, "max-autotune"); None: eager.
        compile_backend: str = "inductor",  # torch.compile backend ("aot_eager": no code generation, for checks).
        fused_modconv: bool = True,  # False: the generator's modulated convs as scale + shared conv + demodulate.
    ) -> Inverter:
        """Optional speed switches for inference and training, all off by default (the plain fp32 path is what
        tests check; ``tests/test_fast_path.py`` bounds the difference). The encoder is compiled in place
        (``nn.Module.compile``), so its state-dict keys do not change. Returns ``self``."""
        if isinstance(autocast, str):
            if autocast not in AUTOCAST_DTYPES:
                raise ValueError(f"autocast={autocast!r}; choose one of {sorted(AUTOCAST_DTYPES)} or None")
            autocast = AUTOCAST_DTYPES[autocast]
        self.autocast = autocast
        self.channels_last = bool(channels_last)
        self.generator.set_modconv(fused=fused_modconv)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        if compile is not None:
            kw = {"mode": compile} if compile_backend == "inductor" else {}
            self.encoder.compile(backend=compile_backend, **kw)
            self.generator.synthesis = torch.compile(self.generator.synthesis, backend=compile_backend, **kw)
        self._avg_image = None
        return self

    def invert(
        self,
        x: torch.Tensor,  # Images [N, 3, S, S] in [-1, 1] at the encoder size (input_spec.prepare for other tasks).
        num_iters: int | None = None,  # Override the number of ReStyle steps.
        noise_mode: str = "const",  # Generator noise for the reconstructions ('random': a fresh draw per render).
        ws_init: torch.Tensor | None = None,  # ReStyle: start from these ws (their image is rendered).
        render: bool = True,  # False: skip the final step's image (its .images is None), e.g. for latents only.
        noise_generator: torch.Generator | None = None,  # noise_mode='random': draw from this generator.
    ) -> InversionResult:
        """Run the encoder (once, or ``num_iters`` residual steps) and the generator: every step of :meth:`iterate`."""
        return InversionResult(steps=list(self.iterate(x, num_iters, noise_mode, ws_init, render, noise_generator)))

    def iterate(
        self,
        x: torch.Tensor,  # Images [N, 3, S, S] in [-1, 1] at the encoder size (input_spec.prepare for other tasks).
        num_iters: int | None = None,  # Override the number of ReStyle steps.
        noise_mode: str = "const",  # Generator noise for the reconstructions ('random': a fresh draw per render).
        ws_init: torch.Tensor | None = None,  # ReStyle: start from these ws (their image is rendered).
        render: bool = True,  # False: skip the final step's image.
        noise_generator: torch.Generator | None = None,  # noise_mode='random': draw from this generator.
    ) -> Iterator[InversionStep]:
        """The inversion loop, one :class:`InversionStep` at a time (pSp / e4e: one step).

        Step ``t + 1`` is computed only when asked for, from step ``t``'s (detached, with ``detach_steps``) ``ws``
        and image, so a trainer can back-propagate each step's loss before the next step exists and only one
        step's autograd graph is alive at a time, as the official ReStyle trainer does."""
        channels = self.input_spec.channels
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(f"x must be [N, {channels}, H, W] ({self.input_spec.mode} input; see "
                             f"inverter.input_spec.prepare), got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.encoder_hw:
            raise ValueError(
                f"images must be {self.encoder_hw[0]}x{self.encoder_hw[1]} (the encoder size, height x width), got "
                f"{tuple(x.shape[-2:])}; resize them first with inversion.inverter.resize_images"
            )
        iters = self.num_iters if num_iters is None else num_iters
        if iters > 1 and not self.residual:
            raise ValueError("num_iters > 1 needs a residual (ReStyle) inverter")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        G = self.generator

        def synthesis(ws: torch.Tensor) -> torch.Tensor:
            return self.crop_content(G.synthesis(ws, noise_mode=noise_mode, noise_generator=noise_generator))

        if not self.residual:
            with self._autocast(x):
                delta = self.encoder(x)
                ws = delta + self.latent_avg.to(delta.dtype) if self.start_from_latent_avg else delta
                images = synthesis(ws) if render else None
            yield InversionStep(ws=ws, images=images, delta=delta)
            return

        n = x.shape[0]
        with self._autocast(x):
            if ws_init is None:
                ws_prev = self.latent_avg[None].to(x).expand(n, -1, -1)
                y_prev = self.avg_image(x.dtype, x.device).expand(n, -1, -1, -1)
            else:
                ws_prev = ws_init
                with torch.no_grad():
                    y_prev = resize_images(synthesis(ws_init), self.encoder_hw, self.resize_mode)
        for t in range(iters):
            last = t == iters - 1
            with self._autocast(x):
                delta = self.encoder(torch.cat([x, y_prev.to(x.dtype)], dim=1))
                ws = ws_prev + delta
                images = synthesis(ws) if render or not last else None
                if not last:
                    ws_prev = ws
                    y_prev = resize_images(images, self.encoder_hw, self.resize_mode)
                    if self.detach_steps:
                        ws_prev, y_prev = ws_prev.detach(), y_prev.detach()
            yield InversionStep(ws=ws, images=images, delta=delta)

    def multimodal(self, x: torch.Tensor, latent_mask, **kwargs):
        """pSp's multi-modal synthesis by style mixing: :func:`inversion.style_mixing.multimodal` on this inverter."""
        from .style_mixing import multimodal

        return multimodal(self, x, latent_mask, **kwargs)

    def _autocast(self, x: torch.Tensor):
        """The fast path's autocast around one step's computation (entered per step, never across a ``yield``:
        autocast is thread-global state and must not leak into the caller's code between steps)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.autocast)

    def forward(self, x: torch.Tensor, num_iters: int | None = None, noise_mode: str = "const") -> InversionResult:
        return self.invert(x, num_iters=num_iters, noise_mode=noise_mode)
