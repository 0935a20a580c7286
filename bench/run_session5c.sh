#!/usr/bin/env bash
# Session 5's last GPU-machine call: end to end at batch 1 with torch.compile now compiling on one
# inductor thread (backends/pytorch.py `inductor_settings`), and the compile + CUDA graph GPU tests.
# Usage: source bench/device_env.sh; bash bench/run_session5c.sh OUT
out=$(realpath -m "$1"); mkdir -p "$out"
[ -f /tmp/models/yolov8n.pt ] || python3 bench/make_models.py /tmp/models > /dev/null
b="--device cuda --imgsz 640 --batch 1 --frame-size 1920x1080 --iters 300 --warmup 30 --duration 4 --e2e-iters 500"
source bench/run_step.sh
run bench-v8n-e2e 130 python3 -m yolo_accel bench --model /tmp/models/yolov8n.pt $b \
  --backends torch-fp16-cl-graph,torch-fp16-cl-compile-graph --report-dir "$out/bench-v8n-e2e"
run gpu-tests-compile-graph 150 python3 -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_gpu.py \
  -k "compile_with_cuda_graph or channels_last_and_compile"
run bench-v5n-e2e 130 python3 -m yolo_accel bench --model .device/assets/models/yolov5n.pt $b \
  --backends torch-fp16-cl-graph,torch-fp16-cl-compile-graph --report-dir "$out/bench-v5n-e2e"
echo "== done $(date +%T)"
