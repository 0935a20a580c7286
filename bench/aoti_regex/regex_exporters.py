"""Which shared objects mapped into a torch + CUDA process export std::regex template code?

An exported (default-visibility, weak) instantiation in the global scope can interpose on the copy
that a later dlopen'ed library (an AOTInductor wrapper.so) carries; this lists the candidates.
"""

import subprocess
import sys

import torch

if torch.cuda.is_available():
    torch.zeros(1).cuda()
if len(sys.argv) > 1:
    exec(sys.argv[1])
with open("/proc/self/maps") as maps:
    libs = sorted({ln.split()[-1] for ln in maps if ".so" in ln.split()[-1]})
print(len(libs), "shared objects mapped;", [x for x in libs if "libstdc++" in x])
for lib in libs:
    try:
        out = subprocess.run(["nm", "-D", "--defined-only", "-C", lib], capture_output=True, text=True).stdout
    except OSError as err:
        print("nm failed:", err)
        break
    hits = [ln for ln in out.splitlines() if "regex_traits<char>" in ln or "_BracketMatcher" in ln]
    if hits:
        print(f"{lib}: {len(hits)} regex symbols, e.g. {hits[0][:160]}")
