#!/usr/bin/env bash
# Source on the bare GPU machine, from the repository root: installs what the calls carried and sets
# the environment. Carried (ignored) folders: .whl/ (wheels), .device/assets/ (a slice of ../shared/assets),
# .ortgpu/ (onnxruntime-gpu in parts, see ../shared/tools/ort-gpu-parts.sh; parts already copied to
# /root/ortparts by earlier calls). Every step is skipped when already done on this warm machine.
if [ -f .ortgpu/WHEEL ] && [ ! -d /tmp/ortgpu/onnxruntime ]; then
  mkdir -p /root/ortparts && cp .ortgpu/part* /root/ortparts/ 2>/dev/null
  w=$(cat .ortgpu/WHEEL)
  cat $(ls /root/ortparts/part* | sort -V) > "/tmp/$w" &&
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ortgpu "/tmp/$w"
fi
if [ -d .whl ] && [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl $(ls .pnv/*.whl .whl-video/*.whl 2>/dev/null) && touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/ortgpu:/tmp/site:$PWD/src YOLO_OFFLINE=True YOLO_ACCEL_ASSETS=$PWD/.device/assets \
  YOLO_ACCEL_CACHE=/root/yacache PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
