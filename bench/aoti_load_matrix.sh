#!/usr/bin/env bash
# Which process state makes torch's AOTInductor loader crash (std::regex in parse_device_str, seen
# on the H100)? Compiles one package without loading it, then loads it in fresh processes that
# first import / do one thing each. Usage: source bench/device_env.sh; bash bench/aoti_load_matrix.sh OUT
out=$(realpath -m "$1"); mkdir -p "$out"
p=/tmp/v8-fp16.pt2
python3 bench/make_models.py /tmp/models > /dev/null
echo "LANG=$LANG LC_ALL=$LC_ALL; $(locale -a 2>/dev/null | tr '\n' ' ')" > "$out/env.txt"
[ -f $p ] || timeout 200 python3 -m yolo_accel export /tmp/models/yolov8n.pt --format compiled --half \
  --device cuda --no-check --output $p --force > "$out/export.txt" 2>&1
run() {  # run ENV-ASSIGNMENTS PYTHON-PRELUDE
  echo "[$1] [$2]" >> "$out/matrix.txt"
  env $1 timeout 30 python3 - "$p" "$2" >> "$out/matrix.txt" 2>&1 <<'PY'
import sys
exec(sys.argv[2])
import torch
fn = torch._inductor.aoti_load_package(sys.argv[1])
print("   loaded OK", flush=True)
PY
  echo "   rc=$?" >> "$out/matrix.txt"
}
run "A=1" "pass"
run "LC_ALL=C" "pass"
run "LC_ALL=C.UTF-8" "pass"
run "A=1" "import onnxruntime"
run "A=1" "import ctypes; ctypes.CDLL('libstdc++.so.6', mode=ctypes.RTLD_GLOBAL)"
run "A=1" "import os; sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)"
run "A=1" "import onnxruntime.capi._pybind_state"
run "A=1" "import ctypes, glob, onnxruntime, os; ctypes.CDLL(glob.glob(os.path.dirname(onnxruntime.__file__) + '/capi/libonnxruntime*.so*')[0])"
cat "$out/env.txt" "$out/matrix.txt"
