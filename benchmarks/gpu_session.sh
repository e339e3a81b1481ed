#!/usr/bin/env bash
# The GPU measurements still missing from README.md, as one prepared script for a lent, offline GPU machine.
# Results go under $OUT (default benchmarks/results/gpu_session): gpu.txt, one log per part, and every JSON the
# benchmarks wrote packed in results_json.tgz (the device tool returns at most 8 files).
#   bash benchmarks/gpu_session.sh all        # table, breakdown, tune, sweep, in that order, within $BUDGET_S seconds
#   bash benchmarks/gpu_session.sh table      # benchmarks/run.py: the performance table beside the official figures
#   bash benchmarks/gpu_session.sh breakdown  # benchmarks/breakdown.py: where the pSp / ReStyle step time goes
#   bash benchmarks/gpu_session.sh tune       # benchmarks/tune.py --lpips (batched pivotal tuning), StyleGAN3 T/R rows
#   bash benchmarks/gpu_session.sh sweep      # benchmarks/run.py --sweep: every fast-path switch with its guard
#   bash benchmarks/gpu_session.sh selfinv    # the 1024 px refinement study: train 500 steps, evaluate with refine
# Packages: the machine needs torch, torchvision, pytorch-lightning, torchmetrics, matplotlib, scipy, tqdm and pillow
# (the lent H200's image has them); the rest comes from .device_kit/ (bash benchmarks/device_kit.sh, run where a
# package registry is reachable; carry .device_kit with the call), installed here into /tmp/site. No pip install -e:
# the repository root goes on PYTHONPATH. VGG16 weights for selfinv: $VGG16, else .device_kit/weights, else ../shared.
# QUICK=1: few repeats and small runs (a dry run of the script itself; its figures are not for quoting).
# Each part runs under `timeout` (BUDGET_S, default 510 s for `all`, the parts sharing it; a part past its limit
# gets SIGTERM, then SIGKILL 20 s later), and every part writes its log and JSON as it goes, so a part cut short
# still leaves what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
out="${OUT:-benchmarks/results/gpu_session}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
quick=()
[ "${QUICK:-0}" = "1" ] && quick=(--quick)

if [ -d .device_kit/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .device_kit/wheels/*.whl
  export PYTHONPATH="/tmp/site:$repo${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import hydra, omegaconf, lpips, pytorch_optimizer, pytorch_lightning, inversion" || {
  echo "missing Python packages: run 'bash benchmarks/device_kit.sh' where pip works and carry .device_kit" >&2
  exit 3
}
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv > "$out/gpu.txt"
else
  echo "no nvidia-smi on this machine" > "$out/gpu.txt"
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"

# every JSON the benchmarks wrote, as one archive (the device tool returns at most 8 files)
session_start="$(mktemp)"
pack() {
  local files
  files="$(find benchmarks/results -maxdepth 1 -name '*.json' -newer "$session_start" -printf '%f\n')"
  [ -z "$files" ] || tar -czf "$out/results_json.tgz" -C benchmarks/results $files
}

lim() {  # lim CMD...: run CMD under timeout, within the current part's deadline $pd
  local left=$((pd - SECONDS))
  [ "$left" -ge 1 ] || left=1
  timeout --kill-after=20 "$left" "$@"  # SIGTERM (Lightning swallows SIGINT), then KILL
}

part() {  # part NAME SECONDS: run one part under a time limit; a part cut short keeps its log and its JSON
  local name="$1" rc=0
  pd=$((SECONDS + $2))
  echo "== part $name (limit $2 s) ==" >&2
  case "$name" in
    table)
      lim python3 -m benchmarks.run "${quick[@]}" 2>&1 | tee "$out/table.log" || rc=$? ;;
    breakdown)
      local args=()
      [ ${#quick[@]} -gt 0 ] && args=(--repeats 2 --warmup 1 --profile-steps 1)
      { lim python3 -m benchmarks.breakdown "${args[@]}" && \
          lim python3 -m benchmarks.breakdown "${args[@]}" --method ReStyle-pSp-5; } 2>&1 \
        | tee "$out/breakdown.log" || rc=$? ;;
    tune)
      local args=() gargs=()
      [ ${#quick[@]} -gt 0 ] && args=(--repeats 1 --steps 2) && gargs=(--repeats 1 --warmup 0 --resolution 64)
      { lim python3 -m benchmarks.tune --lpips "${args[@]}" && \
          lim python3 -m benchmarks.generator --arch stylegan3-t --batch-sizes 8 "${gargs[@]}" && \
          lim python3 -m benchmarks.generator --arch stylegan3-r --batch-sizes 8 "${gargs[@]}"; } 2>&1 \
        | tee "$out/tune.log" || rc=$? ;;
    sweep)
      lim python3 -m benchmarks.run --sweep "${quick[@]}" 2>&1 | tee "$out/sweep.log" || rc=$? ;;
    selfinv)
      local vgg="${VGG16:-}" steps=500 refine_steps=200
      [ -z "$vgg" ] && [ -f .device_kit/weights/vgg16_features_imagenet_fp16.pth ] \
        && vgg=.device_kit/weights/vgg16_features_imagenet_fp16.pth
      [ -z "$vgg" ] && vgg=../shared/weights/vgg16_features_imagenet_fp16.pth
      [ ${#quick[@]} -gt 0 ] && steps=2 refine_steps=2
      {
        lim python3 train.py experiment=selfinv_1024 trainer.max_steps=$steps logger=csv && \
        lim python3 evaluate.py checkpoint=outputs/train/selfinv_1024/export/inverter.pt device=cuda \
          batch_size=16 eval_data.expect.img_resolution=1024 refine=image2stylegan refine.num_steps=$refine_steps \
          "paths.vgg16=$vgg" progress=false out_dir=outputs/evaluate/selfinv_1024
      } 2>&1 | tee "$out/selfinv.log" | tail -n 60 || rc=$?
      for f in metrics.json timing.json report.md plots/refine_quality_vs_steps.png; do
        if [ -f "outputs/evaluate/selfinv_1024/$f" ]; then
          cp "outputs/evaluate/selfinv_1024/$f" "$out/selfinv_$(basename "$f")"
        fi
      done ;;
    *) echo "usage: $0 all|table|breakdown|tune|sweep|selfinv" >&2; exit 2 ;;
  esac
  pack
  [ "$rc" -eq 0 ] || echo "part $name ended with status $rc (124 or 137: cut at its time limit)" >&2
  return 0
}

what="${1:-all}"
if [ "$what" = all ]; then
  deadline=$((SECONDS + ${BUDGET_S:-510}))
  for name in table breakdown tune sweep; do
    left=$((deadline - SECONDS))
    if [ "$left" -lt 30 ]; then echo "part $name skipped: the time budget is spent" >&2; continue; fi
    part "$name" "$left"
  done
else
  part "$what" "${BUDGET_S:-540}"
fi
ls -l "$out"
