#!/usr/bin/env bash
# BENCHMARKS.md, "ONNX Runtime on CUDA": torch against every ONNX Runtime variant, batch 1/8/32/64, 640.
# Usage: bash bench/gpu_onnxruntime.sh MODEL.pt OUT_DIR   (on a CUDA machine with onnxruntime-gpu installed)
set -euo pipefail
model=$1
out=$2
python3 -m yolo_accel bench --model "$model" --device cuda --imgsz 640 --batch 1,8,32,64 \
  --backends torch,torch-fp16,onnxruntime,onnxruntime-iobind,onnxruntime-fp16,onnxruntime-fp16-iobind,onnxruntime-cpu \
  --iters 200 --warmup 20 --duration 5 --ort-gpu-mem-limit 24 --report-dir "$out"
