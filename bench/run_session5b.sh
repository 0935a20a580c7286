#!/usr/bin/env bash
# Session 5's second GPU-machine call (fresh machine): the compile + CUDA graph GPU tests, accuracy
# of that variant on coco128, and whether inductor's compile workers slow the host copy (profile with
# the default worker pool, then with TORCHINDUCTOR_COMPILE_THREADS=1; each with an empty inductor cache).
# Usage: source bench/device_env.sh; bash bench/run_session5b.sh OUT
out=$(realpath -m "$1"); mkdir -p "$out"
v5=.device/assets/models/yolov5n.pt
[ -f /tmp/models/yolov8n.pt ] || python3 bench/make_models.py /tmp/models > /dev/null
source bench/run_step.sh
run gpu-tests-compile 180 python3 -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_gpu.py -k compile
run validate-compile 120 python3 -m yolo_accel validate --model $v5 --data .devfull/coco128/data.yaml --device cuda \
  --backends torch-fp16,torch-fp16-cl-compile-graph --report-dir "$out/validate-compile"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind-pool run profile-v8n-compile-pool-log 120 python3 bench/profile_fastpath.py /tmp/models/yolov8n.pt "$out/profile-v8n-compile-pool.txt" \
  --variant torch-fp16-cl-compile-graph
TORCHINDUCTOR_CACHE_DIR=/tmp/ind-1 TORCHINDUCTOR_COMPILE_THREADS=1 run profile-v8n-compile-1thread-log 120 python3 bench/profile_fastpath.py /tmp/models/yolov8n.pt \
  "$out/profile-v8n-compile-1thread.txt" --variant torch-fp16-cl-compile-graph
echo "== done $(date +%T)"
