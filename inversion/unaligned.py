"""Render a StyleGAN3 inversion of an aligned face crop in the unaligned framing of the original photo.

StyleGAN3's first layer samples Fourier features on a grid that a user transform (the buffer
``G.synthesis.input.transform``, [3, 3]) moves before anything else, so the same latents can be rendered rotated
and translated (stylegan3-editing's "unaligned" inversions, ``docs/notes/stylegan3_editing.md`` section 5).

Coordinates: an image of any resolution is ``[-0.5, 0.5]^2`` in units of its width, origin at the centre, ``x``
right, ``y`` down -- the generator's own frame (its input grid spans one unit across the image). The aligned crop
(what the encoder saw, and what the generator renders with the identity transform) has coordinates ``a``; the
unaligned crop, an axis-aligned square of the original photo with the aligned crop's size, has coordinates ``u``.

* ``M`` (``matrix``) maps aligned to unaligned coordinates, ``u = M a``; for a square quad it is
  stylegan3-editing's ``make_transform(t, θ)``: ``[[cos θ, sin θ, t_x], [−sin θ, cos θ, t_y], [0, 0, 1]]``;
* ``M⁻¹`` (``inverse``) is what goes into ``G.synthesis.input.transform`` (NVIDIA's convention: the buffer is
  the inverse of the image transform; ``SynthesisInput`` evaluates its features at ``M⁻¹ u``), so the render
  at ``u`` shows the aligned render at ``a = M⁻¹ u``.

Derivation from the alignment's known geometry (no landmark re-detection, unlike stylegan3-editing):
:func:`inversion.align.aligned_to_image` maps aligned pixels to photo pixels exactly; the FFHQ quad is a square,
so the map is a rotation by ``φ`` (the angle of the quad's top edge, clockwise on screen since ``y`` is down),
a uniform scale ``D / S`` (``D`` = quad side) and a translation. The unaligned square has the same side ``D``,
so ``u = R(φ) a + t`` with ``t = (c_a − c_u) / D``, ``c_a`` / ``c_u`` the photo points at the two crops'
centres. stylegan3-editing takes ``θ`` as the angle between the eye lines of the unaligned and the aligned
image, ``arccos`` of their dot product, ``360 − θ`` when the unaligned right eye is lower: a similarity maps
the eye line to the eye line rotated by ``φ``, so that is ``θ = −φ mod 360``, whatever the landmarks
(``R(φ) = R(−θ)`` is the matrix above). Their ``t = (L_u − L_r) / W`` (the unaligned left eye minus the left eye
of the aligned image rotated by ``θ`` about its centre) is ``u − R(φ) a`` at one point, which for a rigid map
is ``t`` at every point. By default the unaligned square is centred on the quad centre (their ``crop_face``
without the random shift), so ``t`` is zero up to the FFHQ warp's half-pixel offset (``0.5 × shrink factor``
photo pixels, different for different output sizes); ``center=`` moves the square.

Example::

    result = FaceAligner(output_size=256).align(photo)
    tf = unaligned_transform(result, output_size=G.img_resolution)
    tf.crop(photo).save("unaligned_input.png")                # the photo, in the unaligned framing
    images = render_unaligned(G, ws, tf.inverse)               # the inversion, in the same framing
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch

from .align import AlignResult, aligned_to_image, ffhq_warp, image_to_aligned, quad_size

__all__ = ["UnalignedTransform", "has_input_transform", "make_transform", "render_unaligned",
           "unaligned_transform"]


def make_transform(translate: Any, angle: float) -> np.ndarray:
    """stylegan3-editing's / NVIDIA ``gen_images.py``'s ``make_transform``: (3, 3) float64
    ``[[cos θ, sin θ, t_x], [−sin θ, cos θ, t_y], [0, 0, 1]]``, ``angle`` θ in degrees, ``translate`` in image
    widths."""
    t = np.asarray(translate, dtype=np.float64).reshape(2)
    s, c = np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))
    return np.array([[c, s, t[0]], [-s, c, t[1]], [0.0, 0.0, 1.0]])


@dataclass
class UnalignedTransform:
    """The unaligned crop of one photo and the transforms between it and the aligned crop.

    box:          (4,) float64 ``x0, y0, x1, y1``: the axis-aligned square in photo pixels (may leave the photo;
                  :meth:`crop` pads like the alignment does).
    quad:         (4, 2) float64 the same square as a quad (TL, BL, BR, TR) for :func:`inversion.align.ffhq_warp`.
    theta:        rotation θ in degrees, stylegan3-editing's convention: in [0, 360), the angle by which
                  ``PIL.Image.rotate`` (counter-clockwise) turns the aligned crop into the unaligned framing.
    translation:  (2,) float64 ``t`` in image widths (``x`` right, ``y`` down).
    matrix:       (3, 3) float64 ``M``: aligned -> unaligned coordinates (:func:`make_transform` of ``t``, θ).
    inverse:      (3, 3) float64 ``M⁻¹``: the value for ``G.synthesis.input.transform``.
    align_size:   side of the aligned crop the geometry was computed for.
    output_size:  side of the unaligned crop (:meth:`crop`).
    """

    box: np.ndarray
    quad: np.ndarray
    theta: float
    translation: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    align_size: int
    output_size: int

    def crop(self, image: PIL.Image.Image, *, enable_padding: bool = True) -> PIL.Image.Image:
        """The unaligned square of ``image`` (the original photo) at ``output_size``, warped exactly like the
        aligned crop (:func:`inversion.align.ffhq_warp`: same filters, same padding where it leaves the photo)."""
        return ffhq_warp(image, self.quad, output_size=self.output_size, enable_padding=enable_padding)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats (JSON): ``box``, ``theta``, ``translation``, ``matrix``, ``inverse``, sizes."""
        return {"box": self.box.tolist(), "theta": self.theta, "translation": self.translation.tolist(),
                "matrix": self.matrix.tolist(), "inverse": self.inverse.tolist(), "align_size": self.align_size,
                "output_size": self.output_size}


def unaligned_transform(
    align: AlignResult | Any,  # An AlignResult, or its (4, 2) quad (then align_size is needed).
    output_size: int | None = None,  # Side of the unaligned crop (e.g. G.img_resolution); None: align_size.
    *,
    align_size: int | None = None,  # Side of the aligned crop; None: the AlignResult's image width.
    center: Any = None,  # (x, y) photo pixels: centre of the unaligned square; None: the quad's centre.
    shrink: bool = True,  # The shrink given to ffhq_warp for both crops (FaceAligner: True).
) -> UnalignedTransform:
    """The axis-aligned square of the photo with the aligned crop's scale, and ``M`` / ``M⁻¹`` between the two
    crops (see the module docstring for the derivation). Pure: nothing is rendered or detected.

    raises:  ValueError when the quad is not a square (then no rotation + translation relates the crops).
    """
    if isinstance(align, AlignResult):
        quad = np.asarray(align.quad, dtype=np.float64)
        if align_size is None:
            align_size = align.image.width
    else:
        quad = np.asarray(align, dtype=np.float64)
    if align_size is None:
        raise ValueError("unaligned_transform: align_size is needed when a quad is given instead of an AlignResult")
    if quad.shape != (4, 2) or not np.all(np.isfinite(quad)):
        raise ValueError(f"quad must be a finite (4, 2) array, got shape {quad.shape}")
    align_size = int(align_size)
    output_size = align_size if output_size is None else int(output_size)
    if align_size < 1 or output_size < 1:
        raise ValueError(f"sizes must be >= 1, got align_size={align_size}, output_size={output_size}")
    side = quad_size(quad)
    if side <= 0:
        raise ValueError("quad is degenerate (zero size)")
    centre = quad.mean(axis=0) if center is None else np.asarray(center, dtype=np.float64).reshape(2)
    x0, y0 = centre - side / 2
    x1, y1 = centre + side / 2
    box = np.array([x0, y0, x1, y1])
    uquad = np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]])

    # Aligned coordinates (image widths, centred) -> photo pixels -> unaligned coordinates, through the exact
    # point maps of the warp (its half-pixel offset included). The map is affine: three points determine it.
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    photo = aligned_to_image((a + 0.5) * align_size, quad, align_size, shrink=shrink)
    u = image_to_aligned(photo, uquad, output_size, shrink=shrink) / output_size - 0.5
    t = u[0]
    linear = np.stack([u[1] - t, u[2] - t], axis=1)  # columns: images of the aligned x and y axes
    if not np.allclose(linear.T @ linear, np.eye(2), atol=1e-6):
        raise ValueError("the quad is not a square (its sides differ or are not perpendicular): the aligned and "
                         "unaligned crops are not related by a rotation and a translation")
    phi = np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))  # the quad's top edge, clockwise on screen
    theta = float((-phi) % 360.0)
    matrix = make_transform(t, theta)
    return UnalignedTransform(box=box, quad=uquad, theta=theta, translation=t.copy(), matrix=matrix,
                              inverse=np.linalg.inv(matrix), align_size=align_size, output_size=output_size)


def has_input_transform(G: Any) -> bool:
    """Whether ``G`` has StyleGAN3's user transform buffer ``G.synthesis.input.transform`` (StyleGAN2 has not)."""
    transform = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
    return isinstance(transform, torch.Tensor) and transform.shape == (3, 3)


def render_unaligned(
    G: Any,  # A StyleGAN3 generator (StyleGAN3Generator or anything with synthesis.input.transform [3, 3]).
    ws: torch.Tensor,  # [N, num_ws, w_dim]
    transform: Any,  # [3, 3] or [N, 3, 3]: the INVERSE transform(s) M⁻¹ (UnalignedTransform.inverse), per image.
    **synthesis_kwargs: Any,  # Passed on to G.synthesis (noise_mode, ...).
) -> torch.Tensor:
    """Render ``ws`` with ``G.synthesis.input.transform`` set to ``transform`` (image ``i`` with ``transform[i]``),
    returning images [N, C, H, W]. The buffer holds one matrix, so different matrices render one image at a time;
    it is restored afterwards, also when rendering fails. Gradients flow as in a plain ``G.synthesis`` call.

    raises:  ValueError when ``G`` has no ``synthesis.input.transform`` (a StyleGAN2) or the shapes are wrong.
    """
    if not has_input_transform(G):
        raise ValueError(f"render_unaligned needs a StyleGAN3 generator (with synthesis.input.transform); "
                         f"this is a {type(G).__name__}")
    buf = G.synthesis.input.transform
    matrices = transform if isinstance(transform, torch.Tensor) else torch.from_numpy(np.array(transform, np.float64))
    if matrices.shape == (3, 3):
        matrices = matrices.expand(len(ws), 3, 3)
    if matrices.ndim != 3 or matrices.shape[1:] != (3, 3) or len(matrices) != len(ws):
        raise ValueError(f"transform must be [3, 3] or [N, 3, 3] with N = {len(ws)} images, got "
                         f"{tuple(matrices.shape)}")
    matrices = matrices.to(device=buf.device, dtype=buf.dtype)
    saved = buf.detach().clone()
    try:
        if len(ws) == 0 or bool((matrices == matrices[:1]).all()):  # one matrix: one batched call
            with torch.no_grad():
                buf.copy_(matrices[0] if len(ws) else saved)
            return G.synthesis(ws, **synthesis_kwargs)
        images = []
        for i in range(len(ws)):
            with torch.no_grad():
                buf.copy_(matrices[i])
            images.append(G.synthesis(ws[i : i + 1], **synthesis_kwargs))
        return torch.cat(images)
    finally:
        with torch.no_grad():
            buf.copy_(saved)
