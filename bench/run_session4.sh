#!/usr/bin/env bash
# Session 4's GPU-machine call: with packages now built by a compiler that links libstdc++
# dynamically (export/cxx.py), the GPU tests (the AOTInductor one included, fresh cache) and the
# compiled rows of bench. The H100 run of 2026-11-23 also asked for compiled-fp16-graph: its capture
# failed, and that variant is refused since. Usage: source bench/device_env.sh; bash bench/run_session4.sh OUT
out=$(realpath -m "$1"); mkdir -p "$out"
export YOLO_ACCEL_CACHE=/root/yacache-s4
v5=.device/assets/models/yolov5n.pt
python3 -m yolo_accel doctor > "$out/doctor.txt" 2>&1
echo "== gpu tests $(date +%T)"
timeout 380 python3 -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_gpu.py > "$out/gpu-tests.txt" 2>&1
echo "rc=$?" >> "$out/gpu-tests.txt"
echo "== bench $(date +%T)"
timeout 190 python3 -m yolo_accel bench --model $v5 --device cuda --batch 1,8 --frame-size 1920x1080 --iters 200 \
  --warmup 20 --duration 1 --e2e-iters 100 --backends torch-fp16-graph,compiled-fp16 \
  --report-dir "$out/bench-v5n-compiled" > "$out/bench-v5n-compiled.txt" 2>&1
echo "rc=$?" >> "$out/bench-v5n-compiled.txt"
echo "== done $(date +%T)"
tail -n 30 "$out/gpu-tests.txt" "$out/bench-v5n-compiled.txt"; grep -i "compiler" "$out/doctor.txt"
