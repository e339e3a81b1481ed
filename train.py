"""Train an inversion encoder: ``python train.py [experiment=psp_ffhq] [key=value ...]``.

With no arguments this runs the embedded CPU demo (a tiny pSp encoder on the 64 px demo generator). The run is
assembled by :func:`inversion.training.train` from the composed ``conf/train.yaml``.
"""

import sys

import hydra
from omegaconf import DictConfig

from inversion.config import rename_deprecated
from inversion.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    sys.argv[1:] = rename_deprecated(sys.argv[1:])  # old key names (e.g. metrics.lpips_backbone) still work, warned
    main()
