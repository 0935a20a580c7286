#!/usr/bin/env bash
# Session 4, second probe: the GPU machine sets CXX=/opt/gcc/bin/g++, so inductor builds packages with
# that compiler, not the system g++. Does the compiler decide whether the package's std::regex crashes?
# Usage: source bench/device_env.sh; bash bench/aoti_regex/run_probe2.sh OUT
out=$(realpath -m "$1"); mkdir -p "$out"; here=$(dirname "$(realpath "$0")")
w=/tmp/aoti_regex2; mkdir -p $w; cd $w || exit 1
elf() { readelf -d "$1" | grep -E "NEEDED|RUNPATH|RPATH"; nm -C "$1" | grep -c "std::locale::classic"; }
{
  for cxx in /opt/gcc/bin/g++ /usr/bin/g++; do
    echo "## $cxx: $($cxx --version | head -1)"; $cxx -print-file-name=libstdc++.so; $cxx -print-file-name=libstdc++.a
    $cxx -O3 -std=c++20 -fPIC -shared "$here/regex_probe.cpp" -o $w/regex_$(basename $(dirname $(dirname $cxx))).so
  done
  ls /opt/gcc/lib64 2>&1 | head; /opt/gcc/bin/g++ -dumpspecs | grep -n -i "static" | head
  for so in $w/regex_*.so; do
    echo "## $so"; elf $so
    for pre in "import torch" "import torch; torch.zeros(1).cuda()"; do
      timeout 30 python3 "$here/load_probe.py" "$pre" lib $so 2>&1 | tail -1; echo "rc=$? ($pre)"
    done
  done
} > "$out/lib.txt" 2>&1
CXX=/usr/bin/g++ timeout 150 python3 "$here/tiny_aoti.py" cuda $w/tiny_sysgxx.pt2 > "$out/compile-sysgxx.txt" 2>&1
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" $w/tiny_sysgxx.pt2 $w/x
elf "$(find $w/x -name '*wrapper.so' | head -1)" > "$out/elf-sysgxx.txt" 2>&1
timeout 45 python3 "$here/load_probe.py" pass pt2 $w/tiny_sysgxx.pt2 > "$out/load-sysgxx.txt" 2>&1; echo "rc=$?" >> "$out/load-sysgxx.txt"
tail -n 40 "$out"/*.txt
