# Sourced by the bench/run_session*.sh scripts (set `out` first): `run NAME LIMIT_S COMMAND...` runs
# COMMAND under a time limit, keeps its output in $out/NAME.txt with the exit status at its end, and
# prints the output's last lines (pytest's DEBUG log lines left out).
run() {
  local name=$1 limit=$2; shift 2
  echo "== $name $(date +%T)"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "rc=$?" >> "$out/$name.txt"
  grep -v DEBUG "$out/$name.txt" | tail -n 20
}
