"""The one way of reading configuration: Hydra's compose API over the repository's ``conf/`` tree.

Entry points that are not ``@hydra.main`` scripts (the invert / edit CLIs, benchmarks, tests) call :func:`compose`
with a root config (``train``, ``evaluate``, ``invert``, ``sample``) and ``group=option`` / ``key=value``
overrides, so a refine or loss spec resolves its ``${paths.*}`` weight files exactly as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["CONF_DIR", "compose", "options", "register_resolvers"]

#: The Hydra config tree shipped with the repository.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


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
        return hydra_compose(config_name=config_name, overrides=list(overrides))
