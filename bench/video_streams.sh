#!/usr/bin/env bash
# The video engine's published rows (BENCHMARKS.md, "Video engine"), on the GPU machine.
#
# Usage: source bench/device_env.sh; bash bench/video_streams.sh CLIPS OUT CASE...
#   CLIPS: a folder made by `python bench/make_clips.py CLIPS --frames 1502` (1080p H.264 and VP9)
#   CASE:  decode     NVDEC alone (the ceiling): H.264 1 and 16 streams, VP9 1 stream
#          one        one 1080p stream, NVDEC, H.264 then VP9
#          one-cpu    one 1080p H.264 stream decoded by OpenCV on the CPU
#          many       16 concurrent 1080p H.264 streams, NVDEC
#          annotated  8 concurrent streams writing annotated MP4
#          e2e        bench: one 1920x1080 host frame -> Detections, batch 1 (NMS runs: the real YOLOv5n)
# Every engine row: YOLOv5n 640 FP16 + CUDA graph + channels_last, ByteTrack, one counting line,
# events written, clips looped for $DURATION seconds (default 20). Summaries (FPS, per-stage table,
# busy shares, GPU and NVDEC utilisation, memory curve) land in OUT/<row>.json.
set -u
clips=$1
out=$(realpath -m "$2")
shift 2
mkdir -p "$out" /tmp/video-out
model=${MODEL:-.device/assets/models/yolov5n.pt}
h264=$clips/traffic_1080p_h264.mp4
vp9=$clips/traffic_1080p_vp9.webm
engine="--model $model --device cuda --half --cuda-graph --channels-last --classes car,motorcycle,bus,truck
  --line 0,675,1920,675 --loop --duration ${DURATION:-20} --force"
# run NAME LIMIT_S COMMAND...: COMMAND under a time limit, its output in OUT/NAME.txt with the exit status
run() {
  local name=$1 limit=$2; shift 2
  echo "== $name $(date +%T)"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "rc=$?" >> "$out/$name.txt"
  tail -n 20 "$out/$name.txt"
}
repeat() { for _ in $(seq "$1"); do printf '%s ' "$2"; done; }
for case in "$@"; do
  case $case in
    decode)
      run decode 120 python3 bench/nvdec_ceiling.py "$h264" --streams 1,16 --seconds 10 --json "$out/decode-h264.json"
      run decode-vp9 60 python3 bench/nvdec_ceiling.py "$vp9" --streams 1 --seconds 10 --json "$out/decode-vp9.json" ;;
    one)
      run one-h264 120 python3 -m yolo_accel video "$h264" $engine --nvdec --events /tmp/video-out/one-h264.jsonl \
        --summary "$out/one-h264.json"
      run one-vp9 120 python3 -m yolo_accel video "$vp9" $engine --nvdec --events /tmp/video-out/one-vp9.jsonl \
        --summary "$out/one-vp9.json" ;;
    one-cpu)
      run one-h264-cpu 120 python3 -m yolo_accel video "$h264" $engine --events /tmp/video-out/one-cpu.jsonl \
        --summary "$out/one-h264-cpu.json" ;;
    many)
      # shellcheck disable=SC2046
      run many16-h264 180 python3 -m yolo_accel video $(repeat 16 "$h264") $engine --nvdec \
        --events /tmp/video-out/many.jsonl --summary "$out/many16-h264.json" ;;
    annotated)
      # shellcheck disable=SC2046
      run annotated8-h264 180 python3 -m yolo_accel video $(repeat 8 "$h264") $engine --nvdec \
        --events /tmp/video-out/ann.jsonl --output /tmp/video-out/ann.mp4 --summary "$out/annotated8-h264.json" ;;
    e2e)
      run e2e 420 python3 -m yolo_accel bench --model "$model" --device cuda --imgsz 640 --batch 1 \
        --frame-size 1920x1080 --iters 300 --warmup 30 --e2e-iters 300 --duration 5 \
        --backends torch-fp16-graph,torch-fp16-cl-compile-graph --report-dir "$out/e2e" ;;
    *) echo "unknown case $case" ;;
  esac
done
