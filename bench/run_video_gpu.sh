#!/usr/bin/env bash
# Issue 7's H100 rows: a 1080p clip (bench/make_1080p.py), one and four concurrent streams,
# CPU (OpenCV) and NVDEC decoding, ByteTrack, one counting line, GPU pipeline, FP16 + CUDA graph.
# Usage, on the GPU machine: source bench/device_env.sh; bash bench/run_video_gpu.sh CLIP_1080P OUT_DIR
clip=$1
out=$2
mkdir -p "$out"
run() {
  name=$1
  shift
  timeout 150 python3 -m yolo_accel video "$@" --model .device/assets/models/yolov5n.pt --device cuda --half \
    --cuda-graph --classes car,motorcycle,bus,truck --line 0,675,1920,675 --max-det 30 --batch 8 --force \
    --summary "$out/$name.json" > "$out/$name.txt" 2>&1
  tail -n 3 "$out/$name.txt"
}
run v1-cpu "$clip"
run v1-cpu-throughput "$clip" --max-wait-ms 2
run v1-nvdec "$clip" --nvdec --max-wait-ms 2
run v4-cpu "$clip" "$clip" "$clip" "$clip"
run v4-nvdec "$clip" "$clip" "$clip" "$clip" --nvdec
