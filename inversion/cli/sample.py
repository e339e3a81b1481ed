"""``inversion sample [key=value ...]``: a grid of images from a configured generator.

The configuration is ``conf/sample.yaml`` composed through :func:`inversion.config.compose`, so every key there
(and every generator group option) is a ``key=value`` override: ``generator=stylegan2_ffhq_1024
generator.path=/w/stylegan2-ffhq-config-f.pt num_images=16 truncation_psi=0.7 out=grid.png``. Argument parsing
only: the work is :func:`inversion.sample.save_samples`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from inversion.config import compose, options
from inversion.models import CheckpointError
from inversion.sample import save_samples

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "inversion sample") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Sample a grid of images from a configured generator.",
        epilog="conf/sample.yaml is composed with the overrides (inversion.config.compose): every key there, and "
               f"the generator group ({', '.join(options('generator'))}), is a key=value override, e.g. "
               "generator=stylegan2_ffhq_1024 generator.path=/w/stylegan2-ffhq-config-f.pt truncation_psi=0.7.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="conf/sample.yaml overrides, e.g. generator=demo num_images=4 seed=1 out=grid.png")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "inversion sample") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            raise ValueError(f"overrides must be key=value (got {bad}); see conf/sample.yaml for the keys")
        cfg = compose("sample", args.overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg))
            return 0
        G = instantiate(cfg.generator).to(cfg.device)
        out = save_samples(G, cfg.out, num_images=int(cfg.num_images), seed=int(cfg.seed),
                           truncation_psi=float(cfg.truncation_psi), noise_mode=str(cfg.noise_mode),
                           class_idx=None if cfg.get("class_idx") is None else int(cfg.class_idx))
    except (FileNotFoundError, CheckpointError, ValueError, HydraException, OmegaConfBaseException) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {cfg.num_images} samples ({G.img_resolution} px, num_ws={G.num_ws}) to {out}", file=sys.stderr)
    return 0
