"""The C++ compiler that AOTInductor builds a package's `wrapper.so` with.

Inductor takes `$CXX` (else `g++`). A compiler whose driver links libstdc++ statically into shared
objects puts a second copy of libstdc++ inside every package; loaded into a process that already
has the shared one (torch has), the package's `std::regex` (torch's `parse_device_str`, run while
the model is constructed) died with SIGSEGV. That is what happened on the project's H100, which sets
`CXX=/opt/gcc/bin/g++` (no `libstdc++.so` beside it): a one-function library holding that regex,
built by that compiler, did not return after `import torch`, and did when built by the system g++
(`bench/results/h100-session4/`); on the CPU machine a `-static-libstdc++` build of it aborts
(`tests/test_cxx.py`). So packages are built with a compiler that links libstdc++ dynamically,
and `YOLO_ACCEL_CXX` names one outright.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from ..errors import ExportError

ENV = "YOLO_ACCEL_CXX"
FALLBACKS = ("g++", "c++", "/usr/bin/g++", "/usr/bin/c++")


@cache
def links_libstdcxx_dynamically(cxx: str) -> bool | None:
    """True if `cxx` finds a shared libstdc++ to link against; None if it does not run.

    gcc and clang answer `-print-file-name=libstdc++.so` with a full path when the file is on their
    library path and with the bare name when it is not: then `-lstdc++` can only take the archive.
    """
    try:
        out = subprocess.run(  # split: $CXX may be a command line, e.g. "ccache g++"
            [*shlex.split(cxx), "-print-file-name=libstdc++.so"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, ValueError, subprocess.SubprocessError):  # ValueError: bad quoting in $CXX
        return None
    return os.path.isabs(out) and os.path.exists(out)


@dataclass(frozen=True)
class CompilerChoice:
    """The compiler for packages, and why when it is not the one inductor would have taken."""

    cxx: str
    note: str | None = None


def inductor_default() -> str:
    """The compiler inductor would use on its own: `$CXX`, else `g++` (torch's rule)."""
    return os.environ.get("CXX") or "g++"


def package_compiler() -> CompilerChoice:
    """The compiler to build AOTInductor packages with (ExportError when there is none that fits)."""
    chosen = os.environ.get(ENV)
    if chosen:
        if links_libstdcxx_dynamically(chosen) is None:
            raise ExportError(f"{ENV}={chosen}: that C++ compiler does not run")
        return CompilerChoice(chosen)
    default = inductor_default()
    verdict = links_libstdcxx_dynamically(default)
    if verdict:
        return CompilerChoice(default)
    seen = {_resolved(default)}
    for path in filter(None, map(shutil.which, FALLBACKS)):
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        if links_libstdcxx_dynamically(path):
            why = "does not run" if verdict is None else "would link libstdc++ into the package statically"
            return CompilerChoice(
                path,
                f"C++ compiler for the package: {path}, not {default} ({default} {why}; "
                f"packages built that way crashed torch's loader; {ENV} chooses one)",
            )
    if verdict is None:
        raise ExportError(f"AOTInductor needs a C++ compiler: {default} does not run; install g++ or set {ENV}")
    raise ExportError(
        f"{default} links libstdc++ statically into shared libraries, and AOTInductor packages built that way "
        f"crash torch's loader; set {ENV} to a g++ that has libstdc++.so"
    )


def _resolved(cmd: str) -> str | None:
    path = shutil.which(cmd)
    return os.path.realpath(path) if path else None
