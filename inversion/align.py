"""Offline FFHQ-style face alignment: MTCNN 5-point landmarks -> FFHQ quad -> aligned square crop.

The geometry follows NVlabs/ffhq-dataset ``download_ffhq.py`` (``recreate_aligned_images``), which was written
for 68-point dlib landmarks. Here the landmarks come from facenet-pytorch's MTCNN (weights ship inside the
facenet-pytorch wheel, so nothing is downloaded): its eye centres and mouth corners stand in for dlib's
eye-contour means and outer mouth corners (points 48 and 54). 68-point landmarks are accepted as well.

Steps of :func:`ffhq_warp`, as in the FFHQ script:

1. shrink: if the quad is at least 4x ``output_size``, downsample the image by an integer factor (Lanczos);
2. crop: crop to the quad's bounding box plus a border of 10% of the quad size;
3. pad: where the quad still leaves the image, reflect-pad, blur the padding and fade it to the median colour
   (exactly the FFHQ recipe, ``enable_padding=True``; with ``enable_padding=False`` PIL fills black);
4. transform: ``Image.transform(QUAD, BILINEAR)`` to ``transform_size`` (default 4x ``output_size``,
   the FFHQ 4096 -> 1024 ratio), then a Lanczos resize to ``output_size``.

Differences from the FFHQ script: landmarks from MTCNN instead of dlib (above); ``output_size`` defaults to
256 and ``transform_size`` to 4x ``output_size``; PIL's ``ANTIALIAS`` is ``LANCZOS`` (the same filter).
:class:`FaceAligner` additionally re-runs MTCNN on a 256 px aligned crop (``refine=1``) and maps those
landmarks back, because MTCNN's 5 points are noticeably worse on tilted faces; ``refine=0`` is the plain
single-pass pipeline. The quad formula and the four warp steps themselves are unchanged.

Conventions: points are ``(x, y)`` in pixels of the input image, ``x`` to the right and ``y`` down,
continuous (pixel i spans [i, i+1)). A quad is a ``(4, 2)`` float64 array of corners in the order
top-left, bottom-left, bottom-right, top-right of the aligned output (the order PIL's ``QUAD`` expects).
:func:`aligned_to_image` / :func:`image_to_aligned` map points between a source image and its aligned crop.

Example::

    aligner = FaceAligner(output_size=256)
    result = aligner.align_file("photo.jpg")  # AlignResult; NoFaceError if no face
    result.image.save("aligned.png")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import PIL.Image
import PIL.ImageOps

__all__ = [
    "AlignResult",
    "FaceAligner",
    "NoFaceError",
    "aligned_to_image",
    "ffhq_quad",
    "ffhq_warp",
    "image_to_aligned",
    "quad_size",
    "select_face",
]

SELECT_MODES = ("largest", "most_confident")
REFINE_SIZE = 256  # side of the crop that refinement passes run MTCNN on


class NoFaceError(ValueError):
    """No face (above the confidence threshold) was found in an image; ``source`` names the image."""

    def __init__(self, source: str, detail: str = "") -> None:
        self.source = source
        msg = f"no face found in {source}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


@dataclass
class AlignResult:
    """One aligned face.

    image:      PIL RGB image, ``output_size`` x ``output_size``.
    quad:       (4, 2) float64, crop corners in input-image pixels (TL, BL, BR, TR of the output).
    landmarks:  (5, 2) float64, MTCNN points in input-image pixels: left eye, right eye, nose,
                mouth left, mouth right ("left" = smaller x in the image); after ``refine`` passes, the
                refined points (``quad == ffhq_quad(landmarks)``).
    box:        (4,) float64, MTCNN box ``x0, y0, x1, y1`` of the chosen face (first pass).
    prob:       MTCNN confidence of the chosen face.
    num_faces:  number of faces found (at or above ``min_prob``), the chosen one included.
    """

    image: PIL.Image.Image
    quad: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    prob: float
    num_faces: int


def _as_points(points: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array-like of (x, y) points, got {type(points).__name__}") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def ffhq_quad(landmarks: Any) -> np.ndarray:
    """The FFHQ crop quad for one face.

    landmarks:  (5, 2) MTCNN points (left eye, right eye, nose, mouth left, mouth right) or
                (68, 2) dlib/iBUG points; ``(x, y)`` pixels, left = smaller x in the image.
    returns:    (4, 2) float64 quad (TL, BL, BR, TR of the aligned output) in the same pixel frame.
    """
    lm = _as_points(landmarks, "landmarks")
    if lm.shape[0] == 5:
        eye_left, eye_right, mouth_left, mouth_right = lm[0], lm[1], lm[3], lm[4]
    elif lm.shape[0] == 68:
        eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
        mouth_left, mouth_right = lm[48], lm[54]
    else:
        raise ValueError(f"landmarks must have 5 (MTCNN) or 68 (dlib) points, got {lm.shape[0]}")

    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # Oriented crop rectangle (FFHQ): x points right along the eyes, corrected by the eye->mouth direction.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if norm == 0:
        raise ValueError("degenerate landmarks: the eye-to-eye and eye-to-mouth vectors cancel out")
    x = x / norm
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_size(quad: Any) -> float:
    """Side length of a quad from :func:`ffhq_quad` (FFHQ's ``qsize = hypot(x) * 2``), in pixels."""
    q = _as_points(quad, "quad")
    if q.shape != (4, 2):
        raise ValueError(f"quad must have shape (4, 2), got {q.shape}")
    return float(np.hypot(*(q[3] - q[0])))


def _shrink_factor(qsize: float, output_size: int) -> int:
    """FFHQ step 1's integer downsampling factor (1 = no shrink)."""
    factor = int(np.floor(qsize / output_size * 0.5))
    return factor if factor > 1 else 1


def _quad_frame(quad: Any, output_size: int, shrink: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = _as_points(quad, "quad")
    if q.shape != (4, 2):
        raise ValueError(f"quad must have shape (4, 2), got {q.shape}")
    # PIL's QUAD transform works in continuous coordinates (pixel i spans [i, i+1)) and FFHQ hands it
    # ``quad + 0.5`` in (possibly shrunk) pixels, so the aligned point (u, v) samples the source at
    # q0 + 0.5 * factor + u/S * (q3 - q0) + v/S * (q1 - q0).
    factor = _shrink_factor(quad_size(q), output_size) if shrink else 1
    return q[0] + 0.5 * factor, q[3] - q[0], q[1] - q[0]


def aligned_to_image(points: Any, quad: Any, output_size: int, *, shrink: bool = True) -> np.ndarray:
    """Map points from an :func:`ffhq_warp` output back to the source image.

    points:       (N, 2) ``(x, y)`` in aligned-image pixels, continuous (pixel i spans [i, i+1)).
    quad:         (4, 2) quad the aligned image was made from.
    output_size:  side of the aligned image.
    shrink:       the ``shrink`` given to :func:`ffhq_warp`.
    returns:      (N, 2) float64 points in source-image pixels (same convention).
    """
    pts = _as_points(points, "points")
    size = _check_size(output_size, "output_size")
    origin, ex, ey = _quad_frame(quad, size, shrink)
    uv = pts / size
    return origin + uv[:, :1] * ex + uv[:, 1:] * ey


def image_to_aligned(points: Any, quad: Any, output_size: int, *, shrink: bool = True) -> np.ndarray:
    """Inverse of :func:`aligned_to_image`: (N, 2) source-image points -> (N, 2) aligned-image points."""
    pts = _as_points(points, "points")
    size = _check_size(output_size, "output_size")
    origin, ex, ey = _quad_frame(quad, size, shrink)
    basis = np.stack([ex, ey], axis=1)  # columns: source displacement per unit of u and of v
    if abs(np.linalg.det(basis)) < 1e-12:
        raise ValueError("quad is degenerate (zero area)")
    return np.linalg.solve(basis, (pts - origin).T).T * size


def _check_image(image: Any, name: str = "image") -> PIL.Image.Image:
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"{name} must be a PIL.Image.Image, got {type(image).__name__} (see PIL.Image.fromarray)")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"{name} is empty ({image.width}x{image.height})")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _int_bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    """The quad's bounding box on the integer grid, (x0, y0, x1, y1) (FFHQ's crop / pad extents)."""
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))


def ffhq_warp(
    image: PIL.Image.Image,
    quad: Any,
    *,
    output_size: int = 256,  # Side of the returned square image, in pixels.
    transform_size: int | None = None,  # Side rendered by the QUAD transform before the final resize; None: 4x output.
    shrink: bool = True,  # FFHQ step 1: integer downsampling when the quad is >= 4x output_size.
    enable_padding: bool = True,  # FFHQ step 3: reflect-pad + blur where the quad leaves the image (else black).
) -> PIL.Image.Image:
    """Crop ``quad`` out of ``image`` into an ``output_size`` square, following the FFHQ script step by step.

    image:      PIL image (converted to RGB).
    quad:       (4, 2) corners (TL, BL, BR, TR of the output) in ``image`` pixels, e.g. from :func:`ffhq_quad`.
    returns:    PIL RGB image of size ``(output_size, output_size)``.
    """
    img = _check_image(image)
    quad = _as_points(quad, "quad").copy()
    if quad.shape != (4, 2):
        raise ValueError(f"quad must have shape (4, 2), got {quad.shape}")
    output_size = _check_size(output_size, "output_size")
    transform_size = 4 * output_size if transform_size is None else _check_size(transform_size, "transform_size")
    qsize = quad_size(quad)
    if qsize <= 0:
        raise ValueError("quad is degenerate (zero size)")

    # 1. Shrink.
    factor = _shrink_factor(qsize, output_size)
    if shrink and factor > 1:
        rsize = (int(np.rint(float(img.size[0]) / factor)), int(np.rint(float(img.size[1]) / factor)))
        img = img.resize(rsize, PIL.Image.Resampling.LANCZOS)
        quad /= factor
        qsize /= factor

    # 2. Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = _int_bbox(quad)
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError(f"quad lies entirely outside the {img.size[0]}x{img.size[1]} image")
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    # 3. Pad (reflect, blur the padding, fade it to the median colour).
    pad = _int_bbox(quad)
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    if enable_padding and max(pad) > border - 4:
        import scipy.ndimage  # lazy: only this step needs scipy

        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(
            1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
            1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
        )
        blur = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    # 4. Transform (the +0.5 is FFHQ's, kept so results match FFHQ-aligned data).
    img = img.transform(
        (transform_size, transform_size),
        PIL.Image.Transform.QUAD,
        tuple((quad + 0.5).flatten()),
        PIL.Image.Resampling.BILINEAR,
    )
    if output_size != transform_size:
        img = img.resize((output_size, output_size), PIL.Image.Resampling.LANCZOS)
    return img


def select_face(boxes: Any, probs: Any, select: str = "largest") -> int:
    """Index of the face to keep.

    boxes:   (N, 4) ``x0, y0, x1, y1``, N >= 1.
    probs:   (N,) detection confidences.
    select:  "largest" (box area) or "most_confident".
    """
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {SELECT_MODES}, got {select!r}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(b) == 0 or len(b) != len(p):
        raise ValueError(f"need N >= 1 boxes and N probs, got {len(b)} boxes and {len(p)} probs")
    if select == "largest":
        return int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
    return int(np.argmax(p))


def _stack(rows: Any, width: tuple[int, ...]) -> np.ndarray:
    # facenet-pytorch returns object arrays under numpy 2; rebuild plain float64 arrays.
    return np.array([np.asarray(r, dtype=np.float64) for r in rows], dtype=np.float64).reshape(-1, *width)


class FaceAligner:
    """Detect faces with MTCNN (facenet-pytorch, offline weights) and align one per image FFHQ-style.

    Nothing is loaded in ``__init__``: MTCNN is built on first use.
    """

    def __init__(
        self,
        *,
        output_size: int = 256,  # Side of the aligned output, in pixels.
        transform_size: int | None = None,  # QUAD-transform render size before the final resize; None: 4x output.
        select: Literal["largest", "most_confident"] = "largest",  # Which face to keep when several are found.
        min_prob: float = 0.9,  # Drop detections whose MTCNN confidence is below this.
        min_face_size: int = 20,  # MTCNN: smallest face side searched for, in pixels.
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),  # MTCNN P/R/O-net thresholds.
        factor: float = 0.709,  # MTCNN image-pyramid scale factor.
        enable_padding: bool = True,  # FFHQ reflect-pad + blur where the crop leaves the image (else black).
        refine: int = 1,  # Extra MTCNN passes on a 256 px aligned crop to re-estimate landmarks; 0 = single pass.
        device: Any = "cpu",  # torch device for MTCNN.
    ) -> None:
        self.output_size = _check_size(output_size, "output_size")
        self.transform_size = None if transform_size is None else _check_size(transform_size, "transform_size")
        if select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, got {select!r}")
        self.select = select
        if not 0.0 <= float(min_prob) <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {min_prob}")
        self.min_prob = float(min_prob)
        self.min_face_size = _check_size(min_face_size, "min_face_size")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must have 3 values (P, R, O nets), got {thresholds!r}")
        self.thresholds = tuple(float(t) for t in thresholds)
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor = float(factor)
        self.enable_padding = bool(enable_padding)
        if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
            raise ValueError(f"refine must be an int >= 0, got {refine!r}")
        self.refine = int(refine)
        self.device = device
        self._mtcnn = None

    @property
    def mtcnn(self):
        """The facenet-pytorch MTCNN detector, built on first access."""
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True,
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                factor=self.factor,
                device=self.device,
            ).eval()
        return self._mtcnn

    def detect(self, image: PIL.Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All faces at or above ``min_prob``.

        image:    PIL image (converted to RGB).
        returns:  boxes (N, 4) ``x0, y0, x1, y1``, probs (N,), landmarks (N, 5, 2); float64, N may be 0.
        """
        import torch

        img = _check_image(image)
        if min(img.size) < self.min_face_size:  # MTCNN's image pyramid would be empty (it raises on that)
            return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
        with torch.no_grad():
            boxes, probs, points = self.mtcnn.detect(img, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
        boxes, probs, points = _stack(boxes, (4,)), _stack(probs, ()), _stack(points, (5, 2))
        keep = probs >= self.min_prob
        return boxes[keep], probs[keep], points[keep]

    def align(self, image: PIL.Image.Image, *, name: str | None = None) -> AlignResult:
        """Detect, pick one face (``select``) and return it FFHQ-aligned.

        image:  PIL image (converted to RGB).
        name:   how to name the image in errors (default: its ``filename`` or "<WxH image>").
        raises: NoFaceError when no face reaches ``min_prob``; TypeError for non-PIL input.
        """
        img = _check_image(image)
        source = name or getattr(image, "filename", "") or f"<{img.width}x{img.height} image>"
        boxes, probs, points = self.detect(img)
        if len(boxes) == 0:
            raise NoFaceError(source, f"MTCNN, min_prob={self.min_prob}, min_face_size={self.min_face_size}")
        i = select_face(boxes, probs, self.select)
        landmarks = points[i]
        quad = ffhq_quad(landmarks)
        for _ in range(self.refine):
            # MTCNN's landmarks degrade on tilted faces; re-detect on the roughly upright crop and map back.
            crop = ffhq_warp(img, quad, output_size=REFINE_SIZE, enable_padding=self.enable_padding)
            b, p, lm = self.detect(crop)
            if len(b) == 0:
                break
            landmarks = aligned_to_image(lm[select_face(b, p, "largest")], quad, REFINE_SIZE)
            quad = ffhq_quad(landmarks)
        aligned = ffhq_warp(
            img,
            quad,
            output_size=self.output_size,
            transform_size=self.transform_size,
            enable_padding=self.enable_padding,
        )
        return AlignResult(aligned, quad, landmarks, boxes[i], float(probs[i]), len(boxes))

    def align_file(self, path: str | os.PathLike) -> AlignResult:
        """Open ``path`` (EXIF orientation applied) and :meth:`align` it.

        raises: FileNotFoundError / ValueError naming ``path`` when it is missing or not an image;
                NoFaceError naming ``path`` when no face is found.
        """
        from .imageio import read_rgb

        return self.align(read_rgb(path), name=os.fspath(path))
