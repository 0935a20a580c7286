#!/usr/bin/env bash
# One GPU-machine call for issue 6's numbers: validate (accuracy), bench (speed) and a profile.
# Compiled (AOTInductor) rows are in the same bench process: a package that torch's loader cannot
# load there becomes an error row (the child-process check), not a dead process.
# Usage: source bench/device_env.sh; bench/run_fastpath_all.sh OUT_DIR
out=$1
mkdir -p "$out"
v5=.device/assets/models/yolov5n.pt
python3 bench/make_models.py /tmp/models > /dev/null
v8=/tmp/models/yolov8n.pt
b="--device cuda --imgsz 640 --batch 1,8,32,128 --frame-size 1920x1080 --iters 300 --warmup 30 --duration 2 --e2e-iters 200 --ort-gpu-mem-limit 24"
rows=torch,torch-fp16,torch-fp16-graph,torch-fp16-cl-graph,compiled-fp16,onnxruntime-fp16-iobind,onnxruntime-fp16-iobind-graph
if [ -d .devfull/coco128 ]; then
  timeout 120 python3 -m yolo_accel validate --model $v5 --data .devfull/coco128/data.yaml --device cuda \
    --backends torch-fp16,torch-fp16-graph,onnxruntime-fp16-iobind --report-dir "$out/validate-v5n" > "$out/validate.txt" 2>&1
fi
timeout 300 python3 -m yolo_accel bench --model $v8 $b --backends $rows --report-dir "$out/bench-v8n" > "$out/bench-v8n.txt" 2>&1
timeout 40 python3 bench/profile_fastpath.py $v8 "$out/profile-v8n-b1.txt" --variant torch-fp16-graph > /dev/null 2>&1
timeout 40 python3 bench/profile_fastpath.py $v5 "$out/profile-v5n-b1.txt" --variant torch-fp16-graph > /dev/null 2>&1
timeout 300 python3 -m yolo_accel bench --model $v5 $b --backends $rows --report-dir "$out/bench-v5n" > "$out/bench-v5n.txt" 2>&1
tail -n 25 "$out"/*.txt
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"
