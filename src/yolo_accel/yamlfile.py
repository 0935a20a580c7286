"""Reading the YAML files users give (data.yaml, gates, names, deploy.yaml) with bounds.

PyYAML's safe loader runs no code, but a small file can still be enormous: aliases let 1 KB describe
a billion list items ("billion laughs"). PyYAML shares the aliased objects, so loading is cheap; the
cost comes later, when the value is walked or written (296 MB of reports from a 1.2 KB data.yaml).
So the file's size and the number of nodes it expands to are bounded before anything is built.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError

MAX_BYTES = 4 << 20  # the largest data.yaml in the wild lists a few thousand names
MAX_NODES = 1_000_000  # nodes after expanding every alias


def read_yaml(path: str | Path, max_bytes: int = MAX_BYTES):
    """The document in `path`: DataError (one line) for a file over `max_bytes`, not text, not YAML, or
    that expands past MAX_NODES."""
    import yaml

    p = Path(path)
    if p.stat().st_size > max_bytes:
        limit = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes >> 10} KiB"
        raise DataError(f"{p}: {p.stat().st_size / 1e6:.1f} MB, over {limit} for this YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file (YAML is text)") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters first: a NUL is a ReaderError here
        node = loader.get_single_node()
        if node is None:
            return None
        nodes = _expanded_size(node, {})
        if nodes > MAX_NODES:
            raise DataError(f"{p}: its aliases expand to {nodes:,} values (over {MAX_NODES:,}); refused")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(f"{p}: not valid YAML ({first})") from None
    except RecursionError:
        raise DataError(f"{p}: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node, memo: dict[int, int]) -> int:
    """Nodes in the document with every alias written out: each shared node counted where it is used
    (memoised, so a billion-laughs file costs as many steps as it has distinct nodes)."""
    import yaml

    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a node that contains itself counts once
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size
