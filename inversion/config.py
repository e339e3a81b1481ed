"""The one way of reading configuration: Hydra's compose API over the repository's ``conf/`` tree.

Entry points that are not ``@hydra.main`` scripts (the invert / edit CLIs, benchmarks, tests) call :func:`compose`
with a root config (``train``, ``evaluate``, ``invert``, ``sample``) and ``group=option`` / ``key=value``
overrides, so a refine or loss spec resolves its ``${paths.*}`` weight files exactly as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["CONF_DIR", "DEPRECATED_KEYS", "compose", "instantiate", "options", "register_resolvers",
           "rename_deprecated", "to_plain"]

#: The Hydra config tree shipped with the repository.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


#: Override keys renamed by the one-spec redesign (2026-12): old key -> new key. Still accepted, with a warning.
DEPRECATED_KEYS: dict[str, str] = {
    "paths.output_dir": "output_dir",
    "loss_size": "module.loss_size",
    "loss_resize_mode": "module.loss_resize_mode",
    "image_every_n_steps": "module.image_every_n_steps",
    "metrics.lpips_backbone": "paths.lpips_alex",
    "metrics.id_weights": "paths.ir_se50",
    "refine.vgg_weights": "paths.vgg16",
    "refine.alex_weights": "paths.lpips_alex",
    "refine.id_weights": "paths.ir_se50",
}
#: ``metrics.id_net=<old name>`` -> the conf/net choice of the ID metric.
_ID_NETS = {"irse50": "ir_se50", "curricularface": "curricularface", "facenet": "facenet"}


def rename_deprecated(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with renamed keys rewritten to their new spelling (a ``FutureWarning`` per key).
    ``metrics.id_net=X`` becomes ``net@metrics.id_sim.module=X``, whose weights file is ``paths.<X>``."""
    import warnings

    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        prefix = key[: len(key) - len(key.lstrip("+~"))]
        bare = key[len(prefix):]
        new = None
        if sep and bare == "metrics.id_net":
            if value not in _ID_NETS:
                raise ValueError(f"metrics.id_net={value}: choose one of {sorted(_ID_NETS)} (now: "
                                 "net@metrics.id_sim.module=ir_se50 | curricularface | facenet)")
            new = f"net@metrics.id_sim.module={_ID_NETS[value]}"
        elif sep and bare in DEPRECATED_KEYS:
            new = f"{DEPRECATED_KEYS[bare]}={value}"
        if new is None:
            out.append(item)
            continue
        warnings.warn(f"'{key}' is deprecated and will be removed: use '{new.partition('=')[0]}' (read as {new})",
                      FutureWarning, stacklevel=2)
        out.append(new)
    return out


def to_plain(node: Any, resolve: bool = True) -> Any:
    """A config node (DictConfig / ListConfig) as plain Python containers (interpolations resolved unless
    ``resolve=False``); anything else is returned as given."""
    return OmegaConf.to_container(node, resolve=resolve) if OmegaConf.is_config(node) else node


def instantiate(spec: Any, *, surface: tuple[type[BaseException], ...], **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(spec, **kwargs)``, re-raising the constructor's own error when it is one of
    ``surface`` (the message that names the missing file or empty split) instead of Hydra's wrapper."""
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(spec, **kwargs)
    except Exception as err:
        if isinstance(err.__cause__, surface):
            raise err.__cause__ from None
        raise


def register_resolvers() -> None:
    """OmegaConf resolvers used by the configs: ``${path_stem:PATH}`` (a file name without its extension)."""
    if not OmegaConf.has_resolver("path_stem"):
        OmegaConf.register_new_resolver("path_stem", lambda p: Path(str(p)).stem if p else "no_checkpoint")


def options(group: str) -> list[str]:
    """The options of a config group (``options("refine")`` -> ``["image2stylegan", "noise", ...]``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose(config_name: str, overrides: Sequence[str] = (), *, config_dir: str | Path | None = None) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with Hydra command-line style ``overrides`` (not resolved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    root = Path(config_dir or CONF_DIR).resolve()
    if not (root / f"{config_name}.yaml").is_file():
        have = sorted(p.stem for p in root.glob("*.yaml"))
        raise FileNotFoundError(f"no config {config_name!r} in {root} (have {have})")
    if GlobalHydra.instance().is_initialized():  # inside a @hydra.main run: compose in a fresh context
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=rename_deprecated(overrides))
