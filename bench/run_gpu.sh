#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md: one model per call, every backend variant, batch 1/8/32/64, 640.
# Usage: bench/run_gpu.sh MODEL.pt OUT_DIR   (on the GPU machine, with onnxruntime-gpu installed)
set -euo pipefail
model=$1
out=$2
python3 -m yolo_accel bench --model "$model" --device cuda --imgsz 640 --batch 1,8,32,64 \
  --backends torch,torch-fp16,onnxruntime,onnxruntime-iobind,onnxruntime-fp16,onnxruntime-fp16-iobind,onnxruntime-cpu \
  --iters 200 --warmup 20 --duration 5 --ort-gpu-mem-limit 24 --report-dir "$out"
