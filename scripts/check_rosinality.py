"""Check our generator against rosinality's own ``model.py`` (run it yourself; needs a local checkout).

    git clone https://github.com/rosinality/stylegan2-pytorch /tmp/stylegan2-pytorch   # on a machine with internet
    python scripts/check_rosinality.py --repo /tmp/stylegan2-pytorch [--ckpt stylegan2-ffhq-config-f.pt]

Builds rosinality's ``Generator`` (random weights, or the given checkpoint), loads the same weights into
ours, and prints the max |difference| of images for ``Generator([ws], input_is_latent=True,
randomize_noise=False)`` vs ``G.synthesis(ws, noise_mode="const")``. rosinality's ``op`` package compiles
CUDA code at import; on a machine without CUDA a stand-in ``op`` module made of plain PyTorch (from
``inversion.models.stylegan2``) is used instead.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inversion.models import load_generator  # noqa: E402
from inversion.models.loading import generator_from_state_dict  # noqa: E402
from inversion.models.stylegan2 import upfirdn2d as our_upfirdn2d  # noqa: E402


def _plain_op_module() -> types.ModuleType:
    op = types.ModuleType("op")

    def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2**0.5):
        shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
        return F.leaky_relu(x + bias.view(shape), negative_slope) * scale

    class FusedLeakyReLU(nn.Module):
        def __init__(self, channel, bias=True, negative_slope=0.2, scale=2**0.5):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channel))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, x):
            return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        return our_upfirdn2d(x, kernel, up=up, down=down, pad=tuple(pad))

    op.fused_leaky_relu, op.FusedLeakyReLU, op.upfirdn2d = fused_leaky_relu, FusedLeakyReLU, upfirdn2d
    op.conv2d_gradfix = types.SimpleNamespace(conv2d=F.conv2d, conv_transpose2d=F.conv_transpose2d)
    return op


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="path to a rosinality/stylegan2-pytorch checkout")
    p.add_argument("--ckpt", default=None, help="optional rosinality .pt to compare on real weights")
    p.add_argument("--size", type=int, default=256, help="resolution for random weights")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.modules["op"] = _plain_op_module()
    sys.path.insert(0, args.repo)
    from model import Generator as RosinalityGenerator  # type: ignore  # noqa: E402

    torch.manual_seed(0)
    if args.ckpt:
        ours = load_generator(args.ckpt)
        ref = RosinalityGenerator(ours.img_resolution, ours.w_dim, ours.n_mlp)
        ref.load_state_dict(torch.load(args.ckpt, map_location="cpu", weights_only=True)["g_ema"])
    else:
        ref = RosinalityGenerator(args.size, 512, 8)
        ours = generator_from_state_dict(ref.state_dict(), torch.zeros(512), "rosinality module")
    ref.eval()
    ws = ours.mapping(torch.randn(2, ours.z_dim))
    with torch.no_grad():
        a, _ = ref([ws], input_is_latent=True, randomize_noise=False)
        b = ours.synthesis(ws, noise_mode="const")
    print(f"{ours.img_resolution} px: max |rosinality - ours| = {(a - b).abs().max().item():.3e}")


if __name__ == "__main__":
    main()
