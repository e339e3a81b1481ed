#!/usr/bin/env bash
# Build .device_kit/ (git-ignored): what an offline GPU machine that already has PyTorch (torch, torchvision,
# pytorch-lightning, torchmetrics, matplotlib, scipy, tqdm, pillow -- e.g. the lent H200's image) lacks to run
# benchmarks/gpu_session.sh, so nothing has to be fetched there:
#   .device_kit/wheels/   pure-Python wheels of hydra-core, omegaconf, antlr4-python3-runtime, lpips and
#                         pytorch_optimizer, at the versions installed in this environment (what the tests ran with)
#   .device_kit/weights/  the VGG16 feature weights of the refinement study (from $SHARED, default ../shared)
# Run it here, where the package registry is reachable, with the project's environment active:
#   bash benchmarks/device_kit.sh
# then send the tree with .device_kit carried; gpu_session.sh installs the wheels into /tmp/site by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.device_kit
shared="${SHARED:-../shared}"
rm -rf "$kit"
mkdir -p "$kit/wheels" "$kit/weights"
for pkg in hydra-core omegaconf antlr4-python3-runtime lpips pytorch_optimizer; do
  ver="$(python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$pkg")"
  # pip wheel takes the published wheel, or builds one from the sdist (antlr4-python3-runtime 4.9 has no wheel)
  python -m pip wheel -q --no-deps --no-cache-dir -w "$kit/wheels" "$pkg==$ver"
done
for whl in "$kit"/wheels/*.whl; do  # platform wheels would need pip download --platform ... (device README)
  case "$whl" in *-none-any.whl) ;; *) echo "not a pure-Python wheel: $whl" >&2; exit 1 ;; esac
done
vgg="$shared/weights/vgg16_features_imagenet_fp16.pth"
if [ -f "$vgg" ]; then
  cp "$vgg" "$kit/weights/"
else
  echo "note: $vgg not found; gpu_session.sh selfinv will need VGG16=<path> on the GPU machine" >&2
fi
ls -l "$kit"/wheels "$kit"/weights
du -sh "$kit"
