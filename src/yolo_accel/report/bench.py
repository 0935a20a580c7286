"""bench.json, bench.md and a self-contained bench.html for `yolo-accel bench`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from . import plots
from .files import write_report_files

# readable at any width: system fonts at 16 px, tables that scroll rather than squeeze
STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;"
    "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
    "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
    ".plots img{max-width:49%;margin:4px}.warn{color:#8a5300}h2{margin-top:1.5em}"
)

HEADER = [
    "backend",
    "batch",
    "model ms median",
    "p95",
    "p99",
    "mean ± std",
    "min",
    "img/s",
    "e2e ms median",
    "pre / infer / post ms",
    "speedup",
    "GPU MB",
    "host RSS MB",
    "size MB",
]


def _mb(v) -> str:
    return f"{v / 2**20:.0f}" if v else "-"


def _gpu(row) -> str:
    g = row.get("gpu_memory") or {}
    if "allocated" in g:
        return f"{_mb(g['allocated'])} alloc / {_mb(g['reserved'])} rsv"
    if "process" in g:
        return f"{_mb(g['process'])} (NVML, process)"
    if "device_used" in g:
        return f"{_mb(g['device_used'])} (NVML, device)"
    return "-"


def rows(report: dict) -> list[list[str]]:
    out = []
    for r in report["rows"]:
        if not r.get("ok"):
            out.append([r["backend"], str(r["batch"]), f"FAILED: {r.get('error', '?')}"] + [""] * (len(HEADER) - 3))
            continue
        m, e, st = r["model_ms"], r["e2e_ms"], r["stages_ms"]
        out.append(
            [
                r["backend"],
                str(r["batch"]),
                f"{m['median']:.3f}",
                f"{m['p95']:.3f}",
                f"{m['p99']:.3f}",
                f"{m['mean']:.3f} ± {m['std']:.3f}",
                f"{m['min']:.3f}",
                f"{r['throughput_ips']:.1f}",
                f"{e['median']:.3f}",
                f"{st['pre']:.2f} / {st['infer']:.2f} / {st['post']:.2f}",
                f"{r['speedup']:.2f}x" if "speedup" in r else "-",
                _gpu(r),
                _mb(r["peak_host_rss_bytes"]),
                f"{r['artifact_bytes'] / 1e6:.1f}",
            ]
        )
    return out


def _intro(report: dict) -> str:
    s = report["settings"]
    return (
        f"{report['date']}; device {s['device']}; imgsz {s['imgsz'] or 'model default'}; warm-up {s['warmup']}, "
        f"up to {s['iters']} timed iterations (at most {s['duration_s']} s per row); baseline "
        f"`{report['baseline']}`. {report['timing']}"
    )


def _machine(report: dict) -> str:
    env = report["environment"]
    gpu = env.get("gpu")
    extra = f"; {gpu}, driver {env.get('driver', '?')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}" if gpu else ""
    return f"Machine: {env.get('cpu')} ({env.get('cpu_threads')} threads){extra}"


def _versions(report: dict) -> str:
    return "Versions: " + ", ".join(f"{k} {v}" for k, v in report["environment"]["packages"].items())


def _warnings(report: dict) -> list[str]:
    return [
        f"{r['backend']} batch {r['batch']}: {'; '.join(r['warnings'])}" for r in report["rows"] if r.get("warnings")
    ]


def markdown(report: dict) -> str:
    lines = [f"# Benchmark: {report['model']['name']}", "", _intro(report), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows(report)]
    if _warnings(report):
        lines += ["", "Warnings:", "", *(f"- {w}" for w in _warnings(report))]
    lines += ["", _machine(report), "", _versions(report), ""]
    return "\n".join(lines)


def figures(report: dict) -> dict[str, bytes]:
    ok = [r for r in report["rows"] if r.get("ok")]
    backends = list(dict.fromkeys(r["backend"] for r in ok))
    batches = sorted({r["batch"] for r in ok})
    get = {(r["backend"], r["batch"]): r for r in ok}
    out = {}
    if not ok:
        return out
    out["latency"] = plots.grouped_bars(
        [f"b{b}" for b in batches],
        {k: [get[(k, b)]["model_ms"]["median"] if (k, b) in get else 0 for b in batches] for k in backends},
        "model-only latency by backend and batch (median)",
        "ms per batch",
    )
    if len(batches) > 1:  # a throughput curve needs two batch sizes; one would be a lone dot
        fig, ax = plots.figure()
        for k in backends:
            pts = [(b, get[(k, b)]["throughput_ips"]) for b in batches if (k, b) in get]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s (model-only)")
        ax.set_title("throughput by batch size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out["throughput"] = plots.to_png(fig)

    def gpu_mb(r):
        g = r.get("gpu_memory") or {}
        return (g.get("allocated") or g.get("process") or g.get("device_used") or 0) / 2**20

    series = {
        "host RSS": [
            max(get[(k, b)]["peak_host_rss_bytes"] for b in batches if (k, b) in get) / 2**20 for k in backends
        ]
    }
    if any(gpu_mb(r) for r in ok):
        series["GPU"] = [max(gpu_mb(get[(k, b)]) for b in batches if (k, b) in get) for k in backends]
    out["memory"] = plots.grouped_bars(backends, series, "peak memory (over batch sizes)", "MiB")
    return out


def html_page(report: dict, images: dict[str, bytes]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows(report))
    imgs = "".join(
        f"<img alt='{k}' src='data:image/png;base64,{base64.b64encode(v).decode()}'>" for k, v in images.items()
    )
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in _warnings(report))
    warn = f"<h2>Warnings</h2><ul class='warn'>{warn}</ul>" if warn else ""
    name = html.escape(report["model"]["name"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>yolo-accel bench: {name}</title>
<style>{STYLE}</style></head><body>
<h1>Benchmark: {name}</h1><p>{html.escape(_intro(report))}</p>
<table><tr>{head}</tr>{body}</table>{warn}<div class="plots">{imgs}</div>
<h2>Machine and versions</h2><p>{html.escape(_machine(report))}</p><p>{html.escape(_versions(report))}</p>
<p>Machine-readable: bench.json beside this file.</p></body></html>"""


def write_bench_report(report: dict, folder: str | Path, write_json: bool = True) -> dict[str, Path]:
    """Write bench.json (unless re-rendering), bench.md and bench.html into `folder`."""
    folder = Path(folder)
    md, page = markdown(report), html_page(report, figures(report))  # rendered before anything is written
    return write_report_files(report, folder, "bench", md, page, write_json)
