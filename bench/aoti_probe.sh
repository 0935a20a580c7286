#!/usr/bin/env bash
# Isolates the crash of the compiled (AOTInductor) rows of `bench` on the H100 (seen in session 2):
# A) the failing shape: an eager row, then compiled rows, one bench process, empty compile cache;
# B) a core dump of A read with cuda-gdb (the machine has no gdb);
# C) the compile + parity check + load alone in a fresh process (as the GPU test does);
# D) bench again, now loading the package that C left in the cache.
# Usage (GPU machine): source bench/device_env.sh; bash bench/aoti_probe.sh OUT_DIR
out=$(realpath -m "$1"); mkdir -p "$out" /tmp/core
cat /proc/sys/kernel/core_pattern > "$out/core_pattern.txt"
ulimit -c unlimited
python3 bench/make_models.py /tmp/models > /dev/null
v8=/tmp/models/yolov8n.pt
export YOLO_ACCEL_CACHE=/root/yacache
rm -rf /root/yacache/compiled
b="--model $v8 --device cuda --imgsz 640 --iters 100 --warmup 10 --duration 1"
step() { echo "== $1 $(date +%T)"; }
step A
(cd /tmp/core && timeout 240 python3 -X faulthandler -m yolo_accel bench $b --batch 1 \
  --backends torch-fp16,compiled-fp16 --report-dir "$out/A") > "$out/A.txt" 2>&1
echo "A rc=$?"
step B
core=$(ls -t /tmp/core/core* 2>/dev/null | head -1)
if [ -n "$core" ]; then
  timeout 120 cuda-gdb -batch -ex "thread apply all bt 25" "$(command -v python3)" "$core" > "$out/B-backtrace.txt" 2>&1
  echo "B rc=$? core=$core"; rm -f /tmp/core/core*
else
  echo "B: no core file (core_pattern: $(cat /proc/sys/kernel/core_pattern))"
fi
step C
timeout 200 python3 -X faulthandler - > "$out/C.txt" 2>&1 <<PY
import time
from yolo_accel import Detector
t0 = time.perf_counter()
with Detector("$v8", backend="compiled", device="cuda", half=True, batch=8) as det:
    print("opened", round(time.perf_counter() - t0, 1), "s:", det.describe(), flush=True)
    import numpy as np
    print(len(det.predict([np.zeros((1080, 1920, 3), np.uint8)])[0]), "boxes")
PY
echo "C rc=$?"; ls -la /root/yacache/compiled 2>&1
step D
(cd /tmp/core && timeout 120 python3 -X faulthandler -m yolo_accel bench $b --batch 1,8 \
  --backends torch-fp16,compiled-fp16,compiled-fp16-graph --report-dir "$out/D") > "$out/D.txt" 2>&1
echo "D rc=$?"
step done
