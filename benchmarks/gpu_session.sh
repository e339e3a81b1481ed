#!/usr/bin/env bash
# The GPU measurements still missing from README.md, as short commands for a lent GPU (results under $OUT, or
# benchmarks/results/ when OUT is unset; at most a handful of files, as the device tool returns at most 8). One part
# per call, each well under 10 minutes on an H100/H200:
#   bash benchmarks/gpu_session.sh table      # benchmarks/run.py: the performance table beside the official figures
#   bash benchmarks/gpu_session.sh sweep      # benchmarks/run.py --sweep: every fast-path switch with its guard
#   bash benchmarks/gpu_session.sh selfinv    # the 1024 px refinement study: train 500 steps, evaluate with refine
# Needs the package installed (pip install -e .); VGG16 weights for the study from $VGG16 (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
case "${1:-table}" in
  table)
    python benchmarks/run.py 2>&1 | tee "$out/table.log"
    for f in benchmarks/results/*.json; do  # the table's own file (<device>.json), not the parts'
      case "$(basename "$f")" in *-*) ;; *) cp "$f" "$out/" ;; esac
    done ;;
  sweep)
    python benchmarks/run.py --sweep 2>&1 | tee "$out/sweep.log"
    cp benchmarks/results/sweep-*.json "$out/" 2>/dev/null || true ;;
  selfinv)
    vgg="${VGG16:-../shared/weights/vgg16_features_imagenet_fp16.pth}"
    python train.py experiment=selfinv_1024 trainer.max_steps=500 logger=csv 2>&1 | tail -n 20 | tee "$out/selfinv_train.log"
    python evaluate.py checkpoint=outputs/train/selfinv_1024/export/inverter.pt device=cuda batch_size=16 \
      eval_data.expect.img_resolution=1024 refine=image2stylegan refine.num_steps=200 "refine.vgg_weights=$vgg" \
      progress=false out_dir=outputs/evaluate/selfinv_1024 2>&1 | tee "$out/selfinv_eval.log"
    for f in metrics.json timing.json report.md plots/refine_quality_vs_steps.png; do
      cp "outputs/evaluate/selfinv_1024/$f" "$out/selfinv_$(basename "$f")"
    done ;;
  *) echo "usage: $0 table|sweep|selfinv" >&2; exit 2 ;;
esac
