#!/usr/bin/env bash
# BENCHMARKS.md, "CPU backends": batch 1, 640, torch against ONNX Runtime's CPU provider, three models.
# Usage: bash bench/cpu_backends.sh OUT_DIR
set -euo pipefail
out=${1:-runs/bench-cpu}
py=${PYTHON:-.venv/bin/python}
$py bench/make_models.py "$out/models"
for model in "${YOLO_ACCEL_ASSETS:-../shared/assets}/models/yolov5n.pt" "$out/models/yolov8n.pt" "$out/models/yolo11n.pt"; do
  name=$(basename "$model" .pt)
  $py -m yolo_accel bench --model "$model" --device cpu --imgsz 640 --batch 1 --backends torch,onnxruntime \
    --iters 100 --warmup 10 --duration 20 --report-dir "$out/$name"
done
