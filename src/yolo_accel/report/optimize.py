"""report.json, report.md and a self-contained report.html for `yolo-accel optimize`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from . import plots
from .bench import STYLE
from .files import write_report_files

HEADER = [
    "candidate",
    "status",
    "mAP50-95",
    "mAP loss %",
    "similar",
    "model ms",
    "p95 ms",
    "img/s",
    "speedup",
    "gates failed / reason",
]


def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def row_cells(r: dict) -> list[str]:
    """One candidate's cells (the live table, the Markdown and the HTML share them)."""
    status = r["status"]
    if status in ("exporting", "validating") and r.get("done"):
        status = f"{status} {r['done']}"
    return [
        r["name"],
        status,
        _num(r.get("map50_95"), ".4f"),
        _num(r.get("map_loss_pct"), ".2f"),
        _num(100 * r["similarity"], ".2f") + "%" if isinstance(r.get("similarity"), float) else "-",
        _num(r.get("model_ms"), ".2f"),
        _num(r.get("model_ms_p95"), ".2f"),
        _num(r.get("throughput_ips"), ".1f"),
        _num(r.get("speedup"), ".2f") + ("x" if isinstance(r.get("speedup"), float) else ""),
        r.get("reason", ""),
    ]


def summary(report: dict) -> str:
    s = report["settings"]
    chosen = report["chosen"]
    g = report["gates"]
    head = (
        f"{report['model']['name']} on {Path(report['data']['source']).name} ({report['data']['images']} images), "
        f"--device {s['device']}, target {report['target']}: {report['metric']}. Gates {g['name']}: speedup >= "
        f"{g['min_speedup']}x, similarity >= {100 * g['min_similarity']:.0f}%, mAP50-95 loss < "
        f"{g['max_map_loss_pct']}% against PyTorch FP32. {len(report['candidates'])} candidates in "
        f"{report['elapsed_s']:.0f} s (budget {s['time_budget_min']:g} min)."
    )
    if chosen:
        r = next(r for r in report["candidates"] if r["name"] == chosen)
        return (
            f"{head} Chosen: {chosen} ({r['about']}): {r['model_ms']:.2f} ms, {r['speedup']:.2f}x the reference, "
            f"mAP50-95 {r['map50_95']:.4f} (loss {r['map_loss_pct']:.2f}%)."
        )
    return f"{head} No candidate passed every gate: nothing to deploy."


def markdown(report: dict) -> str:
    lines = [f"# Optimize: {report['model']['name']}", "", summary(report), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(r)) + " |" for r in report["candidates"]]
    advice = [(r["name"], a) for r in report["candidates"] for a in r.get("advice", [])]
    if advice:
        lines += ["", "## Advice", ""] + [f"- {n}: {a}" for n, a in advice]
    env = report["environment"]
    lines += [
        "",
        "## Machine",
        "",
        f"{env.get('cpu')} ({env.get('cpu_threads')} threads)" + (f", {env['gpu']}" if env.get("gpu") else ""),
        "",
        f"{report['date']}. Machine-readable: report.json beside this file.",
    ]
    return "\n".join(lines) + "\n"


def figures(report: dict) -> dict[str, bytes]:
    """Speed against mAP50-95 for every measured candidate, the chosen one marked."""
    measured = [r for r in report["candidates"] if isinstance(r.get("model_ms"), float)]
    if not measured:
        return {}
    fig, ax = plots.figure(6.4, 4.4)
    colours = {"chosen": "#d62728", "pass": "#2ca02c", "fail": "#7f7f7f", "reference": "#1f77b4"}
    for r in measured:
        st = r["status"]
        ax.scatter(
            r["model_ms"],
            r["map50_95"],
            s=140 if st == "chosen" else 40,
            marker="*" if st == "chosen" else "o",
            color=colours.get(st, "#7f7f7f"),
            zorder=3,
        )
        ax.annotate(r["name"], (r["model_ms"], r["map50_95"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    for st, colour in colours.items():
        ax.scatter([], [], color=colour, marker="*" if st == "chosen" else "o", label=st)
    ax.set_xlabel(f"model-only latency, batch {report['settings']['speed_batch']} (ms; left is faster)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("speed vs accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return {"speed_vs_map": plots.to_png(fig)}


def html_page(report: dict, images: dict[str, bytes]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        f"<tr class='{html.escape(r['status'])}'>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in row_cells(r))
        + "</tr>"
        for r in report["candidates"]
    )
    imgs = "".join(
        f"<img alt='{k}' src='data:image/png;base64,{base64.b64encode(v).decode()}'>" for k, v in images.items()
    )
    advice = "".join(
        f"<li>{html.escape(r['name'])}: {html.escape(a)}</li>"
        for r in report["candidates"]
        for a in r.get("advice", [])
    )
    name = html.escape(report["model"]["name"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>yolo-accel optimize: {name}</title>
<style>{STYLE}tr.chosen td{{background:#eaf7ea;font-weight:bold}}tr.fail td,tr.error td{{color:#a00}}
tr.skipped td{{color:#888}}</style></head><body>
<h1>Optimize: {name}</h1><p>{html.escape(summary(report))}</p>
<table><tr>{head}</tr>{body}</table>
{f"<h2>Advice</h2><ul>{advice}</ul>" if advice else ""}
<div class="plots">{imgs}</div>
<p>{html.escape(report["date"])}. Machine-readable: report.json beside this file.</p></body></html>"""


def write_optimize_report(report: dict, folder: str | Path, write_json: bool = True) -> dict[str, Path]:
    """Write report.json (unless re-rendering), report.md and report.html into `folder`."""
    folder = Path(folder)
    md, page = markdown(report), html_page(report, figures(report))  # rendered before anything is written
    return write_report_files(report, folder, "report", md, page, write_json)
