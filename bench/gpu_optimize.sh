#!/usr/bin/env bash
# `optimize` on the GPU machine (BENCHMARKS.md, "optimize"), then the bundle run through --deploy.
# Usage: source bench/device_env.sh; bash bench/gpu_optimize.sh OUT [BUDGET_MIN]
set -u
out=$1
budget=${2:-8}
a=${YOLO_ACCEL_ASSETS:-.device/assets}
mkdir -p "$out"
timeout 420 python3 -m yolo_accel optimize "$a/models/yolov5n.pt" --data "$a/datasets/coco128/data.yaml" --device cuda \
  --time-budget "$budget" --out "$out/deploy-gpu" --force > "$out/optimize.txt" 2>&1
echo "optimize rc=$?" | tee -a "$out/optimize.txt"
tail -n 12 "$out/optimize.txt"
python3 -m yolo_accel predict "$a/images" --deploy "$out/deploy-gpu" --save-json "$out/predict-deploy.json" --force \
  > "$out/predict.txt" 2>&1
echo "predict --deploy rc=$?"
python3 -m yolo_accel bench --deploy "$out/deploy-gpu" --report-dir "$out/bench-deploy" --force > "$out/bench.txt" 2>&1
echo "bench --deploy rc=$?"; tail -n 6 "$out/bench.txt"
rm -f "$out"/deploy-gpu/model.*  # the artifact itself is not kept with the results
