#!/usr/bin/env bash
# Session 4's AOTInductor-crash probe (GPU machine): is the SIGSEGV in parse_device_str's std::regex
# specific to AOTInductor, which library's code runs there (LD_DEBUG bindings), and does a package
# linked with -Bsymbolic load? Usage: source bench/device_env.sh; bash bench/aoti_regex/run_probe.sh OUT
# On the H100 (2026-11-23) this ran into the 600 s limit of one device call: the package loads were
# slow (their limits add up past it). What it left is in bench/results/h100-session4/probe1; it found
# CXX=/opt/gcc/bin/g++, which run_probe2.sh then tested.
out=$(realpath -m "$1"); mkdir -p "$out"; here=$(dirname "$(realpath "$0")")
w=/tmp/aoti_regex; mkdir -p $w; cd $w || exit 1
step() { echo "== $* $(date +%T)"; }
{
  step env; echo "CXX=${CXX-unset} LANG=$LANG LC_ALL=${LC_ALL-}"; env | grep -E "^LD_|GLIBCXX|^CONDA" ; which -a g++ c++; g++ --version | head -1
  python3 -c "import torch;print(torch.__version__, torch.__file__)"; locale -a 2>&1 | head -5
} > "$out/env.txt" 2>&1
step exporters
timeout 120 python3 "$here/regex_exporters.py" > "$out/exporters.txt" 2>&1
timeout 120 python3 "$here/regex_exporters.py" "import onnxruntime" > "$out/exporters-after-ort.txt" 2>&1
step standalone regex library
for v in plain symbolic; do
  f=""; [ $v = symbolic ] && f="-Wl,-Bsymbolic"
  g++ -O3 -std=c++20 -fPIC -shared "$here/regex_probe.cpp" -o $w/regex_$v.so $f >> "$out/lib.txt" 2>&1
  for pre in "pass" "import torch" "import torch; torch.zeros(1).cuda()"; do
    echo "-- lib=$v preamble='$pre'" >> "$out/lib.txt"
    timeout 60 python3 "$here/load_probe.py" "$pre" lib $w/regex_$v.so >> "$out/lib.txt" 2>&1
    echo "rc=$?" >> "$out/lib.txt"
  done
done
step tiny packages
timeout 150 python3 "$here/tiny_aoti.py" ${DEV:-cuda} $w/tiny_plain.pt2 > "$out/compile-plain.txt" 2>&1
CXX="$here/cxx_symbolic.sh" TORCHINDUCTOR_CACHE_DIR=/tmp/ti_sym timeout 150 python3 "$here/tiny_aoti.py" ${DEV:-cuda} $w/tiny_symbolic.pt2 > "$out/compile-symbolic.txt" 2>&1
for v in plain symbolic; do
  (mkdir -p x_$v && cd x_$v && unzip -qo ../tiny_$v.pt2 && so=$(find . -name "*wrapper.so" | head -1) &&
    echo "$so" && readelf -d "$so" | grep -E "NEEDED|SYMBOLIC|FLAGS" && nm -D --defined-only -C "$so" | grep -c regex) > "$out/elf-$v.txt" 2>&1
  for pre in "pass" "import onnxruntime"; do
    echo "-- pt2=$v preamble='$pre'" >> "$out/load.txt"
    timeout 90 python3 "$here/load_probe.py" "$pre" pt2 $w/tiny_$v.pt2 >> "$out/load.txt" 2>&1
    echo "rc=$?" >> "$out/load.txt"
  done
done
echo "-- pt2=plain LC_ALL=C" >> "$out/load.txt"
LC_ALL=C LANG=C timeout 90 python3 "$here/load_probe.py" pass pt2 $w/tiny_plain.pt2 >> "$out/load.txt" 2>&1; echo "rc=$?" >> "$out/load.txt"
step bindings
LD_DEBUG=bindings LD_DEBUG_OUTPUT=$w/ldb timeout 90 python3 "$here/load_probe.py" pass pt2 $w/tiny_plain.pt2 > /dev/null 2>&1
grep -h -E "regex|locale|collate|ctype" $w/ldb.* | grep "binding file [^ ]*wrapper.so" | sed -E 's/^ *[0-9]+: *//' | sort -u > "$out/bindings-all.txt"
sed -E 's/.* to ([^ ]+) .*/\1/' "$out/bindings-all.txt" | sort | uniq -c > "$out/bindings.txt"
grep -v "to [^ ]*wrapper.so\|libstdc++" "$out/bindings-all.txt" | head -40 >> "$out/bindings.txt"
step done
tail -n 30 "$out"/env.txt "$out"/exporters*.txt "$out"/lib.txt "$out"/load.txt "$out"/elf-*.txt "$out"/bindings.txt
