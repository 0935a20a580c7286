#!/usr/bin/env bash
# A C++ compiler for inductor (CXX=this) that links shared objects with -Bsymbolic: the package's own
# copies of inline/template code bind inside the package, whatever the process has loaded before.
for a in "$@"; do
  [ "$a" = -shared ] && exec g++ "$@" -Wl,-Bsymbolic
done
exec g++ "$@"
