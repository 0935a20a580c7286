#!/usr/bin/env bash
# BENCHMARKS.md, "OpenVINO on the CPU": YOLOv5n at 640, batch 1, model only, on this machine's CPU:
# ONNX Runtime FP32 against OpenVINO FP32, bfloat16 and INT8 (NNCF, calibrated on coco128), and the
# mAP of each on coco128 through validate.
# Usage: bash bench/cpu_openvino.sh OUT_DIR
set -euo pipefail
out=${1:-runs/bench-openvino}
py=${PYTHON:-.venv/bin/python}
assets=${YOLO_ACCEL_ASSETS:-../shared/assets}
model=$assets/models/yolov5n.pt
data=$assets/datasets/coco128/data.yaml
mkdir -p "$out"
$py -m yolo_accel export "$model" --format openvino --int8 --calib-data "$data" -o "$out/yolov5n-int8.xml" --force
$py -m yolo_accel bench --model "$model" --device cpu --imgsz 640 --batch 1 \
  --backends onnxruntime,openvino,openvino-fp16 --iters 100 --warmup 10 --duration 20 --report-dir "$out/fp32" --force
$py -m yolo_accel bench --model "$out/yolov5n-int8.xml" --device cpu --imgsz 640 --batch 1 \
  --backends openvino,openvino-fp16 --iters 100 --warmup 10 --duration 20 --report-dir "$out/int8" --force
$py -m yolo_accel validate -m "$model" --data "$data" --backends torch,onnxruntime,openvino,openvino-fp16 \
  --report-dir "$out/validate-fp32" --force || true
$py -m yolo_accel validate -m "$model" --data "$data" --backends torch,openvino --openvino "$out/yolov5n-int8.xml" \
  --report-dir "$out/validate-int8" --force || true
