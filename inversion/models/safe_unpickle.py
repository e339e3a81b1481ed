"""Read NVIDIA stylegan2-ada-pytorch network pickles without running anything they contain.

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

:func:`read_ada_pickle` returns ``G_ema``'s flat state dict (ada's own key names) and init kwargs;
:mod:`inversion.models.nvidia_convert` maps them to our ``Generator``.
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
    """Read ``G_ema`` from an NVIDIA pickle: ``{"state_dict", "init_kwargs", "class_name", "kind"}``.

    ``state_dict`` has NVIDIA's own key names (stylegan2-ada: ``mapping.fc0.weight``, ``mapping.w_avg``,
    ``synthesis.b4.const``, ``synthesis.b8.conv0.noise_const``, ...; StyleGAN3: ``synthesis.input.freqs``,
    ``synthesis.L0_36_512.weight``, ...). ``kind`` is ``"stylegan3"`` (a ``SynthesisInput`` / ``L<i>_<r>_<c>``
    layers) or ``"stylegan2"``.
    """
    data = load_ada_pickle(path)
    g = data.get("G_ema")
    if not isinstance(g, ModuleRecord):
        keys = sorted(map(str, data))
        raise ValueError(f"{path}: no 'G_ema' network in this pickle (top-level keys: {keys})")
    return {
        "state_dict": record_state_dict(g),
        "init_kwargs": _plain(g.state.get("_init_kwargs") or {}),
        "class_name": g.class_name,
        "kind": "stylegan3" if _is_stylegan3(g) else "stylegan2",
    }
