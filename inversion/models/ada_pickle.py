"""Read NVIDIA stylegan2-ada-pytorch network pickles safely and convert ``G_ema`` to our ``Generator``.

NVIDIA's ``network-snapshot-*.pkl`` files are plain pickles of ``torch_utils.persistence`` objects: every
network is stored as ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the *source code* of the
module that defined the class (``module_src``, which NVIDIA's loader ``exec``s) and the object's
``__dict__`` (``state``: ``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...).

:class:`RestrictedUnpickler` never runs code from the file. ``find_class`` resolves only the explicit
allow-list in :data:`ALLOWED_GLOBALS`; tensors are rebuilt by our own wrappers (storages are decoded with
``torch.load(..., weights_only=True)``), ``_reconstruct_persistent_obj`` becomes :class:`PersistentRecord`
(an inert record; ``module_src`` is kept as text only) and plain ``torch.nn`` containers become
:class:`TorchModuleRecord`. Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...)
raises :class:`pickle.UnpicklingError` naming the global and the file. ``dnnlib`` / ``torch_utils`` are
neither needed nor imported.

Conversion conventions (ada ``networks.py`` -> rosinality ``model.py`` layout), all checked by
``tests/test_ada_pickle.py`` against an independent re-implementation of ada's forward pass:

* mapping: ``normalize_2nd_moment`` (eps 1e-8) is rosinality's ``PixelNorm``; ``fc{i}`` ->
  ``style.{i+1}``. Both store raw weights, apply ``lr / sqrt(in)`` to the weight and ``lr`` to the bias,
  then leaky ReLU(0.2) * sqrt(2). ``mapping.w_avg`` -> ``w_avg``.
* ``affine`` -> ``conv.modulation`` unchanged (both: lr multiplier 1, gain 1/sqrt(w_dim); the bias init 1
  is only an initialisation, the stored bias is copied as is).
* conv weights ``[out, in, k, k]`` -> ``[1, out, in, k, k]``. **No kernel flip** for the up-sampling
  ``conv0``: ada calls ``conv2d_resample(up=2, flip_weight=False)``, which transposes the weight and runs
  ``conv_transpose2d`` with ``flip_weight=not False`` = no flip, then ``upfirdn2d`` with padding 1 and gain
  4 -- exactly rosinality's ``conv_transpose2d(stride=2)`` + ``Blur(kernel * 4, pad=(1, 1))``. (Both
  repositories flip TensorFlow's ``Conv0_up`` kernels on import from TF, so they agree with each other.)
* toRGB: ada multiplies the styles by ``1/sqrt(in*k*k)``, rosinality the weight -- the same product.
  ``torgb.bias`` ``[3]`` -> ``[1, 3, 1, 1]``.
* ``noise_strength`` ``[]`` -> ``noise.weight`` ``[1]``; ``noise_const`` ``[r, r]`` -> ``noises.noise_j``
  ``[1, 1, r, r]`` with ``j = 0`` for ``b4.conv1`` then ``conv0, conv1`` of ``b8, b16, ...``.
* ``b4.const`` ``[C, 4, 4]`` -> ``input.input`` ``[1, C, 4, 4]``; ``resample_filter`` (normalised 2-D
  FIR) * 4 -> ``blur.kernel`` / ``upsample.kernel``; ``conv_clamp`` -> ``Generator(conv_clamp=...)``.

Known numerical differences (float32 rounding level, < 1e-5 on images in the tests):

* demodulation: ada adds eps 1e-8 to ``sum((w * s)^2)`` of the *unscaled* weight, rosinality to the
  weight already scaled by ``1/sqrt(fan_in)``, i.e. an effective eps of ``1e-8 * fan_in``. The relative
  effect is about ``0.5e-8 / mean(s^2)`` -- far below float32 resolution for any trained network.
* ada runs the ``num_fp16_res`` highest resolutions in float16 on GPU (``num_fp16_res=4`` with
  ``conv_clamp=256`` in NVIDIA's configs); our converted generator computes in float32, so its images are
  slightly *more* precise than, and differ at the float16 level (~1e-3) from, NVIDIA's own output.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ALLOWED_GLOBALS",
    "EasyDict",
    "ModuleRecord",
    "PersistentRecord",
    "TorchModuleRecord",
    "RestrictedUnpickler",
    "load_ada_pickle",
    "read_ada_pickle",
    "record_state_dict",
    "convert_ada_generator",
]

_REFUSAL = (
    "refusing to load global '{glob}' from {source}: this loader only reads network weights (tensors and "
    "plain data) from stylegan2-ada pickles and never runs code stored in a pickle"
)
_TF_HINT = (
    " (this is a TensorFlow StyleGAN pickle; convert it to a PyTorch pickle or rosinality .pt first)"
)


# --------------------------------------------------------------------------- inert stand-ins


class EasyDict(dict):
    """Plain ``dict`` subclass standing in for ``dnnlib.util.EasyDict`` (attribute reads for convenience)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ModuleRecord:
    """Inert record of a pickled ``torch.nn.Module``: its class name and its ``__dict__`` (``state``)."""

    module_name: str | None = None
    class_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> ModuleRecord:
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        """Store the pickled ``__dict__`` as data; nothing is called on it."""
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{type(self).__name__}: expected a dict state, got {type(state)}")
        self.state = dict(state)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.module_name}.{self.class_name}>"


class PersistentRecord(ModuleRecord):
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` becomes: data, never a class.

    ``module_src`` is the pickled source text of the defining module; it is kept for inspection only and is
    never compiled or executed.
    """

    def __init__(self, meta: dict[str, Any]):
        self.type = meta.get("type")
        self.version = meta.get("version")
        self.class_name = str(meta.get("class_name"))
        self.module_name = meta.get("module_name")
        src = meta.get("module_src")
        self.module_src = src if isinstance(src, str) else None
        self.__setstate__(meta.get("state") or {})


class TorchModuleRecord(ModuleRecord):
    """Inert stand-in for a plain ``torch.nn`` container (``ModuleList``, ``Sequential``, ...)."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    """Replacement for NVIDIA's reconstructor: returns an inert :class:`PersistentRecord` of ``meta``."""
    if not isinstance(meta, dict) or not isinstance(meta.get("state", {}), dict):
        raise pickle.UnpicklingError(f"malformed persistent object: meta must be a dict, got {type(meta)}")
    return PersistentRecord(meta)


def _torch_module_record_class(module: str, name: str) -> type[TorchModuleRecord]:
    return type(name, (TorchModuleRecord,), {"module_name": module, "class_name": name})


_TORCH_NN_CLASSES = {
    ("torch.nn.modules.module", "Module"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.container", "ParameterList"),
    ("torch.nn.modules.container", "ParameterDict"),
    ("torch.nn.modules.linear", "Identity"),
}
_TORCH_NN_RECORDS = {key: _torch_module_record_class(*key) for key in _TORCH_NN_CLASSES}


# --------------------------------------------------------------------------- tensor rebuilding


def _rebuild_tensor(
    storage: Any,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` with type checks; pickled hooks and metadata are dropped."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"tensor storage must be a torch storage, got {type(storage)}")
    if not isinstance(storage_offset, int) or not all(isinstance(v, int) for v in (*size, *stride)):
        raise pickle.UnpicklingError("tensor offset, size and stride must be integers")
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, tuple(size), tuple(stride), False, collections.OrderedDict()
    )


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    """``_rebuild_parameter(_with_state)``: the parameter's data as a plain tensor (hooks/state dropped)."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"parameter data must be a tensor, got {type(data)}")
    return data.detach()


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` limited to our tensor rebuilders and plain tensor types."""
    known = func in (_rebuild_tensor, _rebuild_parameter) and new_type in (torch.Tensor, torch.nn.Parameter)
    if not known:
        raise pickle.UnpicklingError(f"unsupported tensor reconstruction {func!r} -> {new_type!r}")
    return func(*args)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles encode ``bytes`` as ``_codecs.encode(str, 'latin1')``; allow exactly that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin1")


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> ModuleRecord:
    """Protocol 0/1 object creation, limited to our inert record classes."""
    is_record = isinstance(cls, type) and issubclass(cls, ModuleRecord)
    if not is_record or base is not object or state is not None:
        raise pickle.UnpicklingError(f"copyreg._reconstructor is only allowed for torch.nn containers: {cls}")
    return cls.__new__(cls)


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    """Look up a fixed numpy internal (``numpy._core`` in numpy 2, ``numpy.core`` in numpy 1)."""
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy.{name} is not available")


# --------------------------------------------------------------------------- the allow-list


def _static_allowed() -> dict[tuple[str, str], Callable[[], Any]]:
    """Allowed ``(module, name)`` -> thunk producing the object the pickle gets (resolved lazily)."""
    np_core = ("numpy._core.multiarray", "numpy.core.multiarray")
    table: dict[tuple[str, str], Callable[[], Any]] = {
        ("collections", "OrderedDict"): lambda: collections.OrderedDict,
        ("builtins", "set"): lambda: set,
        ("builtins", "frozenset"): lambda: frozenset,
        ("builtins", "bytearray"): lambda: bytearray,
        ("builtins", "complex"): lambda: complex,
        ("_codecs", "encode"): lambda: _codecs_encode,
        ("copyreg", "_reconstructor"): lambda: _copyreg_reconstructor,
        ("numpy", "dtype"): lambda: _numpy_attr(("numpy",), "dtype"),
        ("numpy", "ndarray"): lambda: _numpy_attr(("numpy",), "ndarray"),
        ("numpy.core.multiarray", "scalar"): lambda: _numpy_attr(np_core, "scalar"),
        ("numpy._core.multiarray", "scalar"): lambda: _numpy_attr(np_core, "scalar"),
        ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_attr(np_core, "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_attr(np_core, "_reconstruct"),
        ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): lambda: _rebuild_from_type,
        ("torch._tensor", "Tensor"): lambda: torch.Tensor,
        ("torch", "Tensor"): lambda: torch.Tensor,
        ("torch.nn.parameter", "Parameter"): lambda: torch.nn.Parameter,
        ("torch", "Size"): lambda: torch.Size,
        ("torch", "device"): lambda: torch.device,
        ("dnnlib.util", "EasyDict"): lambda: EasyDict,
        ("dnnlib", "EasyDict"): lambda: EasyDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): lambda: _reconstruct_persistent_obj,
    }
    for key, record in _TORCH_NN_RECORDS.items():
        table[key] = lambda record=record: record
    return table


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = _static_allowed()
"""Every global a pickle may reference (plus ``torch.<dtype>`` names and ``torch.storage._load_from_bytes``,
which :class:`RestrictedUnpickler` resolves itself)."""

# ``torch.float32`` etc. may appear as globals (e.g. a pickled ``dtype`` attribute). Looked up in
# ``torch.__dict__`` so that no lazy ``torch.__getattr__`` import can be triggered by a name in the file.
_TORCH_DTYPE_NAMES: dict[str, torch.dtype] = {
    name: torch.__dict__[name]
    for name in (
        "float16", "half", "bfloat16", "float32", "float", "float64", "double", "complex64", "complex128",
        "uint8", "int8", "int16", "short", "int32", "int", "int64", "long", "bool",
    )
    if isinstance(torch.__dict__.get(name), torch.dtype)
}

# Python-2 module names that protocol <= 2 pickles use for the same objects.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; everything else is an ``UnpicklingError``."""

    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name`` or refuse; never imports what the pickle names."""
        module = _PY2_MODULES.get(module, module)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self._load_storage_bytes
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return _TORCH_DTYPE_NAMES[name]
        thunk = ALLOWED_GLOBALS.get((module, name))
        if thunk is None:
            hint = _TF_HINT if module.startswith("dnnlib.tflib") else ""
            raise pickle.UnpicklingError(_REFUSAL.format(glob=f"{module}.{name}", source=self.source) + hint)
        return thunk()

    def persistent_load(self, pid: Any) -> Any:
        """Plain NVIDIA pickles have no persistent ids; refuse them."""
        raise pickle.UnpicklingError(f"{self.source}: unexpected persistent id in pickle; refusing to load")

    def _load_storage_bytes(self, data: Any) -> torch.TypedStorage | torch.UntypedStorage:
        """Decode one tensor storage (a nested legacy ``torch.save``) with ``weights_only=True``."""
        if not isinstance(data, (bytes, bytearray)):
            raise pickle.UnpicklingError(f"{self.source}: storage payload must be bytes, got {type(data)}")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises various types for malformed / malicious payloads
            raise pickle.UnpicklingError(
                f"{self.source}: refusing a tensor storage that does not decode as plain weights: {e}"
            ) from e
        if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
            raise pickle.UnpicklingError(f"{self.source}: storage payload decoded to {type(storage)}")
        return storage


# --------------------------------------------------------------------------- reading


def load_ada_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle a stylegan2-ada / stylegan3 network pickle into inert records (no code is executed)."""
    path = Path(path)
    with open(path, "rb") as f:
        data = RestrictedUnpickler(f, source=str(path)).load()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of networks (G, D, G_ema, ...), got {type(data).__name__}")
    return data


def _named_records(record: ModuleRecord, prefix: str = "") -> Iterator[tuple[str, ModuleRecord]]:
    """Yield ``(dotted_path, record)`` for ``record`` and all its sub-modules (like ``named_modules``)."""
    yield prefix, record
    for name, child in (record.state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, ModuleRecord):
            raise ValueError(f"sub-module {prefix + name!r} is a {type(child).__name__}, not a module record")
        yield from _named_records(child, f"{prefix}{name}.")


def record_state_dict(record: ModuleRecord) -> dict[str, torch.Tensor]:
    """Flat ``state_dict`` (``'mapping.fc0.weight'``, ...) from the records' ``_parameters``/``_buffers``."""
    out: dict[str, torch.Tensor] = {}
    for prefix, rec in _named_records(record):
        non_persistent = rec.state.get("_non_persistent_buffers_set") or set()
        items = list((rec.state.get("_parameters") or {}).items())
        items += [(k, v) for k, v in (rec.state.get("_buffers") or {}).items() if k not in non_persistent]
        for name, value in items:
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
            out[prefix + name] = value.detach()
    return out


def _plain(value: Any) -> Any:
    """Deep-convert ``EasyDict`` / ``OrderedDict`` to plain dicts (init kwargs are plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


_SG3_LAYER = re.compile(r"synthesis\.(input|L\d+_\d+_\d+)(\..*)?")


def _is_stylegan3(record: ModuleRecord) -> bool:
    """StyleGAN3 generators have ``synthesis.input`` (``SynthesisInput``) and layers ``L<i>_<r>_<c>``."""
    for path, rec in _named_records(record):
        if rec.class_name == "SynthesisInput" or _SG3_LAYER.fullmatch(path.rstrip(".")):
            return True
    return False


def read_ada_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``G_ema`` from an NVIDIA pickle: ``{"state_dict", "init_kwargs", "class_name"}``.

    ``state_dict`` has ada's own key names (``mapping.fc0.weight``, ``mapping.w_avg``, ``synthesis.b4.const``,
    ``synthesis.b8.conv0.noise_const``, ``...resample_filter``, ...). StyleGAN3 pickles raise
    ``NotImplementedError``.
    """
    data = load_ada_pickle(path)
    g = data.get("G_ema")
    if not isinstance(g, ModuleRecord):
        keys = sorted(map(str, data))
        raise ValueError(f"{path}: no 'G_ema' network in this pickle (top-level keys: {keys})")
    if _is_stylegan3(g):
        raise NotImplementedError(f"StyleGAN3 pickles are not supported yet: {path}")
    return {
        "state_dict": record_state_dict(g),
        "init_kwargs": _plain(g.state.get("_init_kwargs") or {}),
        "class_name": g.class_name,
    }


# --------------------------------------------------------------------------- conversion


class _Source:
    """ada tensors, taken one key at a time with an expected shape; remembers which keys were used."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state
        self.used: set[str] = set()

    def take(self, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The tensor at ``key``, checked to have ``shape``, as contiguous float32."""
        if key not in self.state:
            raise ValueError(f"stylegan2-ada G_ema: missing tensor {key!r}")
        t = self.state[key]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"stylegan2-ada G_ema: {key} has shape {tuple(t.shape)}, expected {shape}")
        self.used.add(key)
        return t.detach().to(torch.float32).contiguous().clone()

    def has(self, key: str) -> bool:
        return key in self.state

    def unused(self) -> list[str]:
        return sorted(set(self.state) - self.used)


def _check_supported(kw: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Raise ``NotImplementedError`` for ada options our rosinality-layout generator cannot represent."""
    mk, sk = kw.get("mapping_kwargs") or {}, kw.get("synthesis_kwargs") or {}
    c_dim = int(kw.get("c_dim") or 0)
    if c_dim > 0 or "mapping.embed.weight" in state:
        raise NotImplementedError(f"conditional stylegan2-ada generators (c_dim={c_dim}) are not supported")
    unsupported = {
        "img_channels": (kw.get("img_channels", 3), 3),
        "synthesis architecture": (sk.get("architecture", "skip"), "skip"),
        "synthesis activation": (sk.get("activation", "lrelu"), "lrelu"),
        "mapping activation": (mk.get("activation", "lrelu"), "lrelu"),
    }
    for what, (value, supported) in unsupported.items():
        if value != supported:
            raise NotImplementedError(f"stylegan2-ada {what}={value!r} is not supported (only {supported!r})")


def _mapping_layers(state: dict[str, torch.Tensor]) -> int:
    """Number of ``mapping.fc{i}`` layers, which must be contiguous from 0."""
    idx = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    if not idx or idx != list(range(len(idx))):
        raise ValueError(f"stylegan2-ada G_ema: mapping layers fc{idx} are missing or not contiguous")
    return len(idx)


def _block_resolutions(state: dict[str, torch.Tensor]) -> list[int]:
    """Synthesis block resolutions ``[4, 8, ..., R]`` from the ``synthesis.b{res}.`` keys."""
    res = sorted({int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    expected = [2**i for i in range(2, 2 + len(res))]
    if res != expected:
        raise ValueError(f"stylegan2-ada G_ema: synthesis blocks {res}, expected {expected}")
    return res


def _infer_channels(state: dict[str, torch.Tensor], resolutions: list[int]) -> dict[int, int]:
    """Feature channels per resolution from tensor shapes (``b4.const``, ``b{res}.conv1.weight``)."""
    if "synthesis.b4.const" not in state:
        raise ValueError("stylegan2-ada G_ema: missing synthesis.b4.const")
    channels = {4: int(state["synthesis.b4.const"].shape[0])}
    for res in resolutions[1:]:
        key = f"synthesis.b{res}.conv1.weight"
        if key not in state:
            raise ValueError(f"stylegan2-ada G_ema: missing {key}")
        channels[res] = int(state[key].shape[0])
    return channels


def _check_kwarg(kw: dict[str, Any], name: str, inferred: int) -> None:
    if name in kw and kw[name] is not None and int(kw[name]) != inferred:
        raise ValueError(f"stylegan2-ada G_ema: init kwarg {name}={kw[name]} but the tensors give {inferred}")


def _fir_kernel(taps: Any) -> torch.Tensor:
    """ada's ``setup_filter(taps)`` as a 2-D tensor: outer product for 1-D taps, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    return f / f.sum()


def _check_filters(src: _Source, blur_kernel: list[float]) -> torch.Tensor:
    """Every ada ``resample_filter`` buffer must equal ``setup_filter(blur_kernel)``; returns that filter."""
    expected = _fir_kernel(blur_kernel)
    for key in [k for k in src.state if k.endswith(".resample_filter")]:
        f = src.state[key].detach().float()
        f2d = f[:, None] * f[None, :] if f.ndim == 1 else f
        if f2d.shape != expected.shape or not torch.allclose(f2d, expected, atol=1e-6):
            raise ValueError(f"stylegan2-ada G_ema: {key} does not match resample_filter {blur_kernel}")
        src.used.add(key)
    return expected


def _convert_mapping(src: _Source, out: dict[str, torch.Tensor], n_mlp: int, z_dim: int, w_dim: int) -> None:
    """``mapping.fc{i}`` -> ``style.{i+1}`` (same raw weights and gains); ``mapping.w_avg`` -> ``w_avg``."""
    for i in range(n_mlp):
        in_dim = z_dim if i == 0 else w_dim
        shape = tuple(src.state[f"mapping.fc{i}.weight"].shape)
        if shape != (w_dim, in_dim):
            raise NotImplementedError(
                f"stylegan2-ada mapping layer fc{i} has shape {shape}; only layer_features == w_dim "
                f"({w_dim}) is supported"
            )
        out[f"style.{i + 1}.weight"] = src.take(f"mapping.fc{i}.weight", (w_dim, in_dim))
        out[f"style.{i + 1}.bias"] = src.take(f"mapping.fc{i}.bias", (w_dim,))
    if src.has("mapping.w_avg"):
        out["w_avg"] = src.take("mapping.w_avg", (w_dim,))
    else:
        msg = "stylegan2-ada G_ema has no mapping.w_avg (w_avg_beta=None); w_avg set to zeros"
        warnings.warn(msg, stacklevel=3)
        out["w_avg"] = torch.zeros(w_dim)


def _convert_affine(src: _Source, ada: str, ours: str, in_ch: int, w_dim: int) -> dict[str, torch.Tensor]:
    """``affine`` (FullyConnectedLayer, lr 1, bias init 1) -> ``modulation`` (EqualLinear, same)."""
    return {
        f"{ours}.modulation.weight": src.take(f"{ada}.affine.weight", (in_ch, w_dim)),
        f"{ours}.modulation.bias": src.take(f"{ada}.affine.bias", (in_ch,)),
    }


def _convert_layer(
    src: _Source, ada: str, ours: str, in_ch: int, out_ch: int, res: int, w_dim: int, use_noise: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One ``SynthesisLayer`` -> ``StyledConv``; returns its tensors and its ``[1, 1, r, r]`` noise buffer.

    The weight is copied unflipped for both the plain and the up-sampling (``conv0``) layers: see the
    module docstring.
    """
    out = {f"{ours}.conv.weight": src.take(f"{ada}.weight", (out_ch, in_ch, 3, 3))[None]}
    out.update(_convert_affine(src, ada, f"{ours}.conv", in_ch, w_dim))
    out[f"{ours}.activate.bias"] = src.take(f"{ada}.bias", (out_ch,))
    if use_noise:
        out[f"{ours}.noise.weight"] = src.take(f"{ada}.noise_strength", ()).reshape(1)
        noise = src.take(f"{ada}.noise_const", (res, res))[None, None]
    else:
        out[f"{ours}.noise.weight"] = torch.zeros(1)
        noise = torch.zeros(1, 1, res, res)
    return out, noise


def _convert_torgb(src: _Source, ada: str, ours: str, in_ch: int, w_dim: int) -> dict[str, torch.Tensor]:
    """``ToRGBLayer`` -> ``ToRGB``: 1x1 weight ``[1, 3, in, 1, 1]``, affine, bias ``[1, 3, 1, 1]``."""
    out = {f"{ours}.conv.weight": src.take(f"{ada}.weight", (3, in_ch, 1, 1))[None]}
    out.update(_convert_affine(src, ada, f"{ours}.conv", in_ch, w_dim))
    out[f"{ours}.bias"] = src.take(f"{ada}.bias", (3,)).reshape(1, 3, 1, 1)
    return out


def _convert_synthesis(
    src: _Source, out: dict[str, torch.Tensor], channels: dict[int, int], w_dim: int, kernel: torch.Tensor,
    use_noise: bool,
) -> None:
    """Blocks ``b4, b8, ...`` -> ``input``, ``conv1``, ``to_rgb1``, ``convs.*``, ``to_rgbs.*``, noises."""
    resolutions = sorted(channels)
    c4 = channels[4]
    out["input.input"] = src.take("synthesis.b4.const", (c4, 4, 4))[None]
    layer, noise = _convert_layer(src, "synthesis.b4.conv1", "conv1", c4, c4, 4, w_dim, use_noise)
    out.update(layer)
    noises = [noise]
    out.update(_convert_torgb(src, "synthesis.b4.torgb", "to_rgb1", c4, w_dim))
    for k, res in enumerate(resolutions[1:]):
        c_in, c_out, blk = channels[res // 2], channels[res], f"synthesis.b{res}"
        layer, noise = _convert_layer(
            src, f"{blk}.conv0", f"convs.{2 * k}", c_in, c_out, res, w_dim, use_noise
        )
        out.update(layer)
        out[f"convs.{2 * k}.conv.blur.kernel"] = kernel * 4  # upfirdn2d gain = up**2
        noises.append(noise)
        layer, noise = _convert_layer(
            src, f"{blk}.conv1", f"convs.{2 * k + 1}", c_out, c_out, res, w_dim, use_noise
        )
        out.update(layer)
        noises.append(noise)
        out.update(_convert_torgb(src, f"{blk}.torgb", f"to_rgbs.{k}", c_out, w_dim))
        out[f"to_rgbs.{k}.upsample.kernel"] = kernel * 4
    for j, noise in enumerate(noises):
        out[f"noises.noise_{j}"] = noise


def convert_ada_generator(ada: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map an ada ``G_ema`` (from :func:`read_ada_pickle`) to our ``Generator``'s state dict and kwargs.

    Returns ``(state_dict, generator_kwargs)``: rosinality key names plus ``w_avg``, and keyword arguments
    (``z_dim``, ``w_dim``, ``img_resolution``, ``n_mlp``, ``channels``, ``lr_mlp``, ``blur_kernel``,
    ``conv_clamp``) so that ``Generator(**generator_kwargs).load_state_dict(state_dict)`` is exact.
    """
    state: dict[str, torch.Tensor] = ada["state_dict"]
    kw: dict[str, Any] = ada.get("init_kwargs") or {}
    mk, sk = kw.get("mapping_kwargs") or {}, kw.get("synthesis_kwargs") or {}
    _check_supported(kw, state)
    src = _Source(state)
    n_mlp = _mapping_layers(state)
    z_dim = int(state["mapping.fc0.weight"].shape[1])
    w_dim = int(state[f"mapping.fc{n_mlp - 1}.weight"].shape[0])
    resolutions = _block_resolutions(state)
    channels = _infer_channels(state, resolutions)
    for name, value in (("z_dim", z_dim), ("w_dim", w_dim), ("img_resolution", resolutions[-1])):
        _check_kwarg(kw, name, value)
    _check_kwarg(mk, "num_layers", n_mlp)
    blur_kernel = [float(v) for v in sk.get("resample_filter", [1, 3, 3, 1])]
    use_noise = bool(sk.get("use_noise", True))
    kernel = _check_filters(src, blur_kernel)

    out: dict[str, torch.Tensor] = {}
    _convert_mapping(src, out, n_mlp, z_dim, w_dim)
    _convert_synthesis(src, out, channels, w_dim, kernel, use_noise)
    if src.unused():
        raise ValueError(f"stylegan2-ada G_ema: tensors with no counterpart in our Generator: {src.unused()}")
    conv_clamp = sk.get("conv_clamp")
    generator_kwargs = dict(
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=resolutions[-1],
        n_mlp=n_mlp,
        channels=channels,
        lr_mlp=float(mk.get("lr_multiplier", 0.01)),
        blur_kernel=tuple(blur_kernel),
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
    )
    return out, generator_kwargs
