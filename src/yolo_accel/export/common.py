"""What every export shares: the traced model, the output checks, the result, the parity check, the cache."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportError, OutputExistsError, SettingsError, YoloAccelError, summary
from ..evaluate.similarity import ParityReport
from ..model import ModelInfo
from ..runs import file_lock

PARITY_THRESHOLD = 0.98


@dataclass
class ExportResult:
    """What an export produced; `path` is None when the parity check failed (nothing was kept)."""

    path: Path | None
    target: Path
    info: ModelInfo
    settings: Any
    seconds: float
    size_bytes: int = 0
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None


def load_for_export(src: Path, imgsz: int | None, say) -> tuple:
    """(module, ModelInfo, (h, w)) of the checkpoint to export; imgsz defaults to its training size."""
    from ..model import load_pytorch
    from ..ops.letterbox import check_imgsz

    say(f"loading {src.name}")
    module, info = load_pytorch(src)
    return module, info, check_imgsz(imgsz or info.imgsz[0], info.stride)


def check_target(target: Path, suffix: str, force: bool) -> Path:
    """The output path, checked before any work: right suffix, not in the way, writable folder."""
    if target.suffix.lower() != suffix:
        raise SettingsError(f"--output must end in {suffix} (got {target})")
    if target.exists() and not force:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK):
        raise SettingsError(f"cannot write to {target.parent}; choose another place with --output")
    return target


def check_parity(
    module, info: ModelInfo, dev, imgsz, test_backend, images: list[Path], threshold: float = PARITY_THRESHOLD
) -> ParityReport:
    """The exported artifact (already opened as a Backend) against the FP32 PyTorch model on real images."""
    from ..backends.pytorch import from_module
    from .parity import compare_backends

    reference = from_module(module, info, dev, half=False)
    try:
        return compare_backends(reference, test_backend, images, imgsz, threshold=threshold)
    finally:
        test_backend.close()


@contextlib.contextmanager
def partial_file(target: Path, what: str) -> Iterator[Path]:
    """Around an export: yields the temporary path to write (moved onto `target` only at the end); on
    any failure that file goes, and a non-tool error becomes one line."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}")
    try:
        yield tmp
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, YoloAccelError) or not isinstance(e, Exception):
            raise
        raise ExportError(f"{what} failed: {summary(e)}") from e


def keep_if_parity(
    result: ExportResult,
    tmp: Path,
    t_start: float,
    parity: Callable[[], ParityReport] | None = None,
    before_keep: Callable[[], None] | None = None,
    force: bool = True,
) -> ExportResult:
    """Check parity (when asked), then move the partial file into place; a failed check keeps nothing.
    Without `force` a file that appeared at the target while the export ran (another export to the same
    path) is not replaced: the name is claimed with a hard link, which fails where the name is taken."""
    if parity is not None:
        result.parity = parity()
        if not result.parity.passed:
            tmp.unlink(missing_ok=True)
            result.seconds = time.perf_counter() - t_start
            return result
    linked = False
    if not force:
        taken = OutputExistsError(
            f"{result.target} was written by another run while this export ran; nothing was replaced "
            "(pass --force to overwrite it)"
        )
        try:
            os.link(tmp, result.target)
            linked = True
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            raise taken from None
        except OSError:  # a file system without hard links: checked, then replaced
            if result.target.exists():
                tmp.unlink(missing_ok=True)
                raise taken from None
    if before_keep is not None:
        before_keep()
    if linked:
        tmp.unlink()
    else:
        os.replace(tmp, result.target)
    result.path = result.target
    result.seconds = time.perf_counter() - t_start
    return result


def cached_export(
    src: Path,
    kind: str,
    suffix: str,
    key_parts: list,
    export: Callable[[Path], ExportResult],
    what: str,
    command: str,
    tag: str = "",
    companions: tuple[str, ...] = (),
) -> Path:
    """The export of `src` into the cache folder `kind`: made once by `export(path)` and reused after, keyed
    on the checkpoint's SHA-256 and `key_parts` (settings, versions, ...). A failed parity check is an
    ExportError naming `command` to see why. `companions`: suffixes of files that belong with it (.bin)."""
    import hashlib
    import json

    from ..assets import cache_dir
    from ..model import file_sha256

    sha = file_sha256(src)
    key = hashlib.sha256(json.dumps([sha, *key_parts], sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / kind / f"{src.stem}-{sha[:8]}-{tag}{key}{suffix}"

    def ready() -> bool:
        return path.is_file() and all(path.with_suffix(c).is_file() for c in companions)

    if ready():
        return path
    # processes that share the cache (cameras, workers, a second command) wait for the first one's
    # export instead of each making the same one; without a lock (Windows) both export, the last rename wins
    with file_lock(path.with_name(path.name + ".lock")):
        if ready():
            return path
        result = export(path)
    if not result.ok:
        raise ExportError(
            f"the {what} of {src.name} failed its parity check ({result.parity.match_rate:.1%} of "
            f"detections matched, {PARITY_THRESHOLD:.0%} needed); run `{command}` to see why"
        )
    return path
