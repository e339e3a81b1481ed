"""Evaluate an inverter (ours or an official pSp / e4e / ReStyle file) on a fixed split.

    python evaluate.py checkpoint=PATH [eval_data=demo|celebahq_test|ffhq_val] [data_root=DIR] \
        [paths.lpips_alex=alexnet_features.pth] [paths.ir_se50=model_ir_se50.pth]

Writes metrics.json, per_image.csv, timing.json, report.md, grid.png and plots/ into out_dir
(default outputs/evaluate/<eval_data>/<checkpoint name>); rerunning resumes from out_dir/cache.
See README.md, section "Evaluation".
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from inversion.config import rename_deprecated
from inversion.evaluation.runner import evaluate, register_resolvers
from inversion.models import CheckpointError

register_resolvers()  # ${path_stem:...} in conf/evaluate.yaml's out_dir


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; user errors (missing files or images, mismatched checkpoints) exit with status 2."""
    try:
        evaluate(cfg)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    sys.argv[1:] = rename_deprecated(sys.argv[1:])  # old key names (e.g. metrics.lpips_backbone) still work, warned
    main()
