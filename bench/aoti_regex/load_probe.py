"""Load a shared library (ctypes) or an AOTInductor package after a given preamble, in this process.

Usage: python load_probe.py PREAMBLE (lib FILE.so | pt2 FILE.pt2)
"""

import ctypes
import sys

exec(sys.argv[1])  # the preamble: "pass", "import torch", "import onnxruntime", ...
kind, path = sys.argv[2], sys.argv[3]
if kind == "lib":
    print("probe_regex('cuda:3') =", ctypes.CDLL(path).probe_regex(b"cuda:3"), flush=True)
else:
    import torch

    runner = torch._inductor.aoti_load_package(path)
    print("loaded", type(runner).__name__, flush=True)
