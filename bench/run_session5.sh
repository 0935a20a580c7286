#!/usr/bin/env bash
# Session 5's GPU-machine calls, one stage per call (onnxruntime-gpu travels in five parts, one per
# call, so the first calls carry a part each and do the torch-only work meanwhile).
# Usage: source bench/device_env.sh; bash bench/run_session5.sh STAGE OUT
#   compile  YOLOv8n, torch.compile + channels_last + CUDA graph against channels_last + CUDA graph
#   profile  torch.profiler over end-to-end calls of those two variants (YOLOv8n, batch 1)
#   v5n      the real YOLOv5n (NMS runs) at batch 1 and 8, the same two variants
#   ort      onnxruntime-gpu installed: its providers, then the ORT CUDA rows of both models
#   tests    pytest -m gpu, all of tests/test_gpu.py, fresh cache
# Each stage's limits add up to less than the call's 600 s.
stage=$1
out=$(realpath -m "$2"); mkdir -p "$out"
v5=.device/assets/models/yolov5n.pt
v8=/tmp/models/yolov8n.pt
[ -f $v8 ] || python3 bench/make_models.py /tmp/models > /dev/null
common="--device cuda --imgsz 640 --frame-size 1920x1080 --iters 300 --warmup 30 --duration 2 --e2e-iters 200"
source bench/run_step.sh
case $stage in
  compile)
    run bench-v8n-compile 500 python3 -m yolo_accel bench --model $v8 $common --batch 1,128 \
      --backends torch-fp16-cl-graph,torch-fp16-cl-compile-graph --report-dir "$out/bench-v8n-compile" ;;
  profile)
    run profile-v8n-compile 200 python3 bench/profile_fastpath.py $v8 "$out/profile-v8n-compile-b1.txt" \
      --variant torch-fp16-cl-compile-graph
    run profile-v8n-clgraph 60 python3 bench/profile_fastpath.py $v8 "$out/profile-v8n-clgraph-b1.txt" \
      --variant torch-fp16-cl-graph ;;
  v5n)
    run bench-v5n-compile 450 python3 -m yolo_accel bench --model $v5 $common --batch 1,8 \
      --backends torch-fp16-graph,torch-fp16-cl-compile-graph --report-dir "$out/bench-v5n-compile" ;;
  ort)
    run providers 60 python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
    ort="torch-fp16-graph,onnxruntime-fp16-iobind,onnxruntime-fp16-iobind-graph"
    run bench-v8n-ort 240 python3 -m yolo_accel bench --model $v8 $common --batch 1,8,32,128 --ort-gpu-mem-limit 24 \
      --backends $ort --report-dir "$out/bench-v8n-ort"
    run bench-v5n-ort 240 python3 -m yolo_accel bench --model $v5 $common --batch 1,8,32,128 --ort-gpu-mem-limit 24 \
      --backends $ort --report-dir "$out/bench-v5n-ort" ;;
  tests)
    export YOLO_ACCEL_CACHE=/root/yacache-s5-tests
    run doctor 60 python3 -m yolo_accel doctor
    run gpu-tests 520 python3 -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_gpu.py ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
echo "== done $(date +%T)"
