#!/usr/bin/env bash
# BENCHMARKS.md, "GPU backends": every torch variant at batch 1, 8 and 64, YOLOv5n and YOLOv8n, 640.
#
# Usage (on a CUDA machine): bash bench/gpu_backends.sh OUT
# YOLOv8n is built from Ultralytics' YAML (untrained weights do not change speed). End-to-end is one
# 1920x1080 frame in host memory -> Detections. One report per model lands in OUT/<model>/.
set -eu
out=$1
mkdir -p "$out"
assets=${YOLO_ACCEL_ASSETS:-../shared/assets}
python3 bench/make_models.py "$out/models" > /dev/null
for model in "$assets/models/yolov5n.pt" "$out/models/yolov8n.pt"; do
  name=$(basename "$model" .pt)
  python3 -m yolo_accel bench --model "$model" --device cuda --imgsz 640 --batch 1,8,64 --frame-size 1920x1080 \
    --backends torch,torch-fp16,torch-fp16-graph,torch-fp16-cl-graph,torch-fp16-cl-compile-graph \
    --iters 200 --warmup 20 --duration 1 --e2e-iters 100 --report-dir "$out/$name" --force
done
