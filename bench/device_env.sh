#!/usr/bin/env bash
# Source on the bare GPU machine, from the repository root: installs what the calls carried and sets
# the environment. Carried (ignored) folders: .whl/ and .whl-serve/ (wheels, from ../shared/tools/gpu-wheels.sh), .pnv/ (PyNvVideoCodec), .whl-video/ (PyAV),
# .device/assets/ (a slice of ../shared/assets), .ortgpu/ (onnxruntime-gpu in parts, see
# ../shared/tools/ort-gpu-parts.sh: one part per call is enough, parts are collected in /root/ortparts and
# the wheel is installed by the call that carries WHEEL once all PARTS are there). Every step is
# skipped when already done on this warm machine.
if ls .ortgpu/part* > /dev/null 2>&1; then
  mkdir -p /root/ortparts && cp -n .ortgpu/part* /root/ortparts/
  echo "onnxruntime-gpu parts here: $(ls /root/ortparts | tr '\n' ' ')"
fi
if [ -f .ortgpu/WHEEL ] && [ ! -d /tmp/ortgpu/onnxruntime ]; then
  w=$(cat .ortgpu/WHEEL)
  if [ "$(ls /root/ortparts/part* | wc -l)" -ge "$(cat .ortgpu/PARTS)" ]; then
    cat $(ls /root/ortparts/part* | sort -V) > "/tmp/$w" &&
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ortgpu "/tmp/$w"
  else
    echo "onnxruntime-gpu: not all $(cat .ortgpu/PARTS) parts have been carried yet"
  fi
fi
for d in .whl .whl-serve .pnv .whl-video; do
  if [ -d $d ] && [ ! -f /tmp/site/$d.done ]; then
    if [ -f $d/install.sh ]; then  # made by ../shared/tools/gpu-wheels.sh: unzips (pip refuses py3x-only tags)
      bash $d/install.sh > /tmp/site-install.log 2>&1 && touch /tmp/site/$d.done
    else
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        $d/*.whl && touch /tmp/site/$d.done
    fi
  fi
done
export PYTHONPATH=/tmp/ortgpu:/tmp/site:$PWD/src YOLO_OFFLINE=True YOLO_ACCEL_ASSETS=$PWD/.device/assets \
  YOLO_ACCEL_CACHE=/root/yacache PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
