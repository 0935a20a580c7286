"""report.json, report.md and a self-contained report.html for `yolo-accel validate`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from . import plots
from .bench import STYLE
from .files import write_report_files


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def summary_rows(report: dict) -> list[list[str]]:
    """One row per backend: accuracy, similarity and speed."""
    rows = []
    for key, b in report["backends"].items():
        a, sp, sim = b["accuracy"], b["speed"], b.get("similarity")
        rows.append(
            [
                key,
                f"{a['map50_95']:.4f}",
                f"{a['map50']:.4f}",
                f"{a['precision']:.3f}",
                f"{a['recall']:.3f}",
                _pct(sim["match_rate"]) if sim else "reference",
                f"{sp['model_ms']['median']:.2f}",
                f"{sp['model_ms']['p95']:.2f}",
                f"{sp['e2e_ms']['median']:.2f}",
                f"{sp['speedup']:.2f}x",
            ]
        )
    return rows


def speed_statement(report: dict) -> str:
    """What the speed column and the speed gate compare (reports without it predate the harness)."""
    s = report["settings"]
    metric = s.get("speed_metric")
    if metric is None:
        return "Speed: model-only latency per image on the validation batches."
    ref = report["backends"].get(report.get("reference", "torch"), {}).get("speed", {})
    runs = ref.get("timed_runs", {})
    what = (
        "model-only latency (the prepared batch already where the backend takes it)"
        if metric == "model"
        else ("end-to-end latency (a decoded frame in host memory to detections)")
    )
    notes = sorted({b["speed"]["note"] for b in report["backends"].values() if b["speed"].get("note")})
    return (
        f"Speed gate: {what}, batch {s['speed_batch']}, one {ref.get('frame', '?')} frame of the dataset, "
        f"timed as `yolo-accel bench` times it ({runs.get('model', '?')} model-only and {runs.get('e2e', '?')} "
        f"end-to-end runs of the reference after {s.get('speed_warmup', '?')} warm-up runs); latencies per batch."
        + (" " + " ".join(notes) if notes else "")
    )


SUMMARY_HEADER = [
    "backend",
    "mAP50-95",
    "mAP50",
    "P",
    "R",
    "similarity",
    "model ms (median)",
    "model ms (p95)",
    "end-to-end ms (median)",
    "speedup",
]


def gate_rows(report: dict) -> list[list[str]]:
    rows = []
    for key, b in report["backends"].items():
        for g in b.get("gates", []):
            thr = g["threshold"]
            if g["criterion"] == "similarity":
                measured, cond = _pct(g["measured"]), f">= {_pct(thr)}"
            elif g["criterion"] == "speedup":
                measured, cond = f"{g['measured']:.2f}x", f">= {thr:.2f}x"
            else:
                measured, cond = f"{g['measured']:.2f}% ({b['map_drop_points']:+.2f} pt drop)", f"< {thr:.2f}%"
            rows.append([key, g["criterion"], measured, cond, "PASS" if g["passed"] else "FAIL", g["advice"]])
    return rows


GATE_HEADER = ["backend", "criterion", "measured", "required", "result", "advice"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def dataset_name(report: dict) -> str:
    """coco128 for .../coco128/data.yaml; the folder or file name otherwise."""
    src = Path(report["data"]["source"])
    return src.parent.name if src.suffix.lower() in (".yaml", ".yml", ".json") and src.parent.name else src.name


def _similarity_lines(report: dict) -> list[tuple[str, list[str]]]:
    """(backend line, worst-image lines) per compared backend."""
    out = []
    for key, b in report["backends"].items():
        sim = b.get("similarity")
        if not sim:
            continue
        head = (
            f"{key}: {sim['matched']}/{sim['reference_detections']} reference detections matched "
            f"({_pct(sim['match_rate'])}), {sim['detections']} found; mean IoU {sim['mean_iou']:.4f}; "
            f"mean |Δconf| {sim['mean_abs_conf_diff']:.2e}; raw output cosine min {sim['raw_cosine_min']:.6f}, "
            f"max |Δ| {sim['raw_max_abs_diff']:.3g}"
        )
        worst = [
            f"{w['image']}: {w['matched']} matched of {w['reference']} (backend found {w['detections']})"
            for w in sim["worst_images"]
        ]
        out.append((head, worst))
    return out


PER_CLASS_HEADER = ["class", "instances", "AP50", "AP50-95"]


def _per_class_rows(report: dict) -> list[list[str]]:
    ref = report["backends"].get("torch")
    if not ref or not ref["accuracy"]["per_class"]:
        return []
    return [
        [c["name"], str(c["instances"]), f"{c['ap50']:.3f}", f"{c['ap50_95']:.3f}"]
        for c in ref["accuracy"]["per_class"]
    ]


def _environment_lines(report: dict) -> tuple[str, str]:
    env = report["environment"]
    machine = f"{env.get('cpu')}, {env.get('cpu_threads')} threads" + (
        f"; GPU {env['gpu']}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}" if env.get("gpu") else ""
    )
    return machine, ", ".join(f"{k} {v}" for k, v in env["packages"].items())


def markdown(report: dict) -> str:
    d, s = report["data"], report["settings"]
    parts = [
        f"# Validation: {Path(report['model']['path']).name} on {dataset_name(report)}",
        "",
        f"**Verdict: {report['verdict']}** (gates `{report['gates']['name']}`; reference: torch FP32)",
        "",
        f"{d['images']} images, {d['instances']} instances, {d['backgrounds']} backgrounds, "
        f"{len(d['skipped'])} skipped. imgsz {s['imgsz'][0]}x{s['imgsz'][1]}, batch {s['batch']}, "
        f"device {s['device']}. mAP: conf {s['conf']}, NMS IoU {s['iou']}, max_det {s['max_det']}, "
        f"multi-label {s['multi_label']}, COCO bbox metrics from faster-coco-eval (maxDets {s['max_det']}). "
        f"Similarity: conf {s['sim_conf']}, NMS IoU {s['sim_iou']}, matched at IoU >= {s['match_iou']}, same class.",
        "",
        speed_statement(report),
        "",
        _md_table(SUMMARY_HEADER, summary_rows(report)),
        "",
        "## Gates",
        "",
        _md_table(GATE_HEADER, gate_rows(report)) if gate_rows(report) else "(no backend other than the reference)",
        "",
        "## Similarity to the reference",
        "",
    ]
    for head, worst in _similarity_lines(report):
        key, rest = head.split(": ", 1)
        parts.append(f"- **{key}**: {rest}")
        parts += [f"  - {w}" for w in worst]
    if _per_class_rows(report):
        parts += ["", "## Per-class AP (reference)", "", _md_table(PER_CLASS_HEADER, _per_class_rows(report))]
    machine, versions = _environment_lines(report)
    parts += ["", "## Environment", "", f"`{machine}`", "", versions, ""]
    return "\n".join(parts)


def figures(report: dict) -> dict[str, bytes]:
    """The four plots of the validation report, as PNG bytes."""
    keys = list(report["backends"])
    b = report["backends"]
    out = {
        "map": plots.grouped_bars(
            keys,
            {
                "mAP50": [b[k]["accuracy"]["map50"] for k in keys],
                "mAP50-95": [b[k]["accuracy"]["map50_95"] for k in keys],
            },
            "mAP per backend",
            "mAP",
        ),
        "latency": plots.grouped_bars(
            keys,
            {
                "model-only": [b[k]["speed"]["model_ms"]["median"] for k in keys],
                "end-to-end": [b[k]["speed"]["e2e_ms"]["median"] for k in keys],
            },
            "latency per image (median; bars to p95)",
            "ms",
            errors={
                "model-only": [b[k]["speed"]["model_ms"]["p95"] - b[k]["speed"]["model_ms"]["median"] for k in keys],
                "end-to-end": [b[k]["speed"]["e2e_ms"]["p95"] - b[k]["speed"]["e2e_ms"]["median"] for k in keys],
            },
        ),
        "pr": plots.curves(
            {
                k: (b[k]["accuracy"]["pr_recall"], b[k]["accuracy"]["pr_precision"])
                for k in keys
                if b[k]["accuracy"]["pr_recall"]
            },
            "precision-recall at IoU 0.5 (mean over classes)",
            "recall",
            "precision",
        ),
    }
    hist = {
        k: (b[k]["similarity"]["iou_histogram"]["bins"], b[k]["similarity"]["iou_histogram"]["counts"])
        for k in keys
        if b[k].get("similarity")
    }
    if hist:
        out["iou"] = plots.histograms(hist, "IoU of boxes matched to the reference", "IoU")
    return out


def html_page(report: dict, images: dict[str, bytes]) -> str:
    def table(header, rows):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(f"<td class='{c.lower() if c in ('PASS', 'FAIL') else ''}'>{html.escape(c)}</td>" for c in r)
            + "</tr>"
            for r in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    imgs = "".join(
        f"<img alt='{k}' src='data:image/png;base64,{base64.b64encode(v).decode()}'>" for k, v in images.items()
    )
    md_intro = html.escape(markdown(report).split("\n\n")[2])
    verdict = report["verdict"]
    title = f"{Path(report['model']['path']).name} on {dataset_name(report)}"
    sim = "".join(
        f"<li>{html.escape(head)}<ul>{''.join(f'<li>{html.escape(w)}</li>' for w in worst)}</ul></li>"
        for head, worst in _similarity_lines(report)
    )
    per_class = _per_class_rows(report)
    machine, versions = _environment_lines(report)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>yolo-accel validation: {html.escape(title)}</title>
<style>{STYLE}.pass{{color:#070;font-weight:bold}}.fail{{color:#b00;font-weight:bold}}.verdict{{font-size:1.4em}}</style>
</head><body>
<h1>Validation: {html.escape(title)}</h1>
<p class="verdict">Verdict: <span class="{verdict.lower()}">{verdict}</span> (gates {html.escape(report["gates"]["name"])})</p>
<p>{md_intro}</p>
<p>{html.escape(speed_statement(report))}</p>
{table(SUMMARY_HEADER, summary_rows(report))}
<h2>Gates</h2>{table(GATE_HEADER, gate_rows(report))}
<h2>Similarity to the reference</h2><ul>{sim}</ul>
{f"<h2>Per-class AP (reference)</h2>{table(PER_CLASS_HEADER, per_class)}" if per_class else ""}
<h2>Plots</h2><div class="plots">{imgs}</div>
<h2>Machine and versions</h2><p>{html.escape(machine)}</p><p>{html.escape(versions)}</p>
<p>Machine-readable: report.json beside this file. {html.escape(report["date"])}</p>
</body></html>"""


def write_validation_report(report: dict, folder: str | Path, write_json: bool = True) -> dict[str, Path]:
    """Write report.json (unless re-rendering), report.md and report.html (plots embedded) into `folder`."""
    folder = Path(folder)
    md, page = markdown(report), html_page(report, figures(report))  # rendered before anything is written
    return write_report_files(report, folder, "report", md, page, write_json)
