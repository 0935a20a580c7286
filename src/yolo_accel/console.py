"""Console rendering shared by the command line and the demo: tables, summaries, the two consoles."""

from __future__ import annotations

import contextlib

from rich.console import Console

out = Console()
err = Console(stderr=True)


def parity_table(report, title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), title_justify="left")
    for col in ("image", "ref dets", "test dets", "matched", "max |Δ| raw", "cosine"):
        t.add_column(col, justify="right" if col != "image" else "left")
    for r in report.rows:
        t.add_row(
            r.image,
            str(r.match.n_ref),
            str(r.match.n_test),
            str(r.match.matched),
            f"{r.raw.max_abs:.2e}",
            f"{r.raw.cosine:.6f}",
        )
    colour = "green" if report.passed else "red"
    t.add_row(
        "[bold]all[/]",
        str(report.n_ref),
        str(report.n_test),
        f"[{colour}]{report.matched} ({report.match_rate:.1%})[/]",
        f"{report.max_abs:.2e}",
        f"{report.min_cosine:.6f}",
        end_section=True,
    )
    return t


def print_validation(report: dict, console, escape, Table) -> None:
    from .report.validation import GATE_HEADER, gate_rows, speed_statement, summary_rows

    d = report["data"]
    console.print(
        escape(
            f"{d['images']} images, {d['instances']} instances, {d['backgrounds']} backgrounds, "
            f"{len(d['skipped'])} skipped"
        )
    )
    t = Table(title="accuracy, similarity to torch FP32, speed", title_justify="left")
    # short headers: the full ones are in report.md / report.html
    for h in ("backend", "mAP50-95", "mAP50", "similar", "model ms", "e2e ms", "speedup"):
        t.add_column(h, justify="left" if h == "backend" else "right", no_wrap=True)
    for r in summary_rows(report):
        t.add_row(*map(escape, [r[0], r[1], r[2], r[5], r[6], r[8], r[9]]))
    console.print(t)
    console.print(escape(speed_statement(report)), highlight=False)
    rows = gate_rows(report)
    if rows:
        g = Table(title=f"gates: {report['gates']['name']}", title_justify="left")
        for h in GATE_HEADER:
            g.add_column(h, overflow="fold")
        for r in rows:
            colour = "green" if r[4] == "PASS" else "red"
            g.add_row(*map(escape, r[:4]), f"[{colour}]{r[4]}[/]", escape(r[5]))
        console.print(g)
    colour = "green" if report["verdict"] == "PASS" else "red"
    console.print(f"verdict: [bold {colour}]{report['verdict']}[/]")


def print_engine_line(r: dict) -> None:
    """Where the time went: busy shares of the detect loop, the busiest decoder and worker; memory drift."""
    b, m = r["busy"], r["memory"]
    text = (
        f"busy: detect launch {b['launch_pct']:.0f}% / finish {b['finish_pct']:.0f}%, decode (busiest stream) "
        f"{b['decode_pct_max']:.0f}%, worker (busiest) {b['worker_pct_max']:.0f}%; {r['workers']} worker process(es)"
    )
    if m.get("gpu_util_mean_pct") is not None:
        text += f"; GPU {m['gpu_util_mean_pct']:.0f}%, NVDEC {m['decoder_util_mean_pct']:.0f}%"
    if m.get("rss_drift_pct") is not None:
        text += f"; memory drift host {m['rss_drift_pct']:.1f}%"
        if m.get("gpu_drift_pct") is not None:
            text += f", GPU {m['gpu_drift_pct']:.1f}%"
    out.print(text, highlight=False)


def print_video_summary(r: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    lat = r["latency_ms"]
    out.print(
        escape(
            f"{r['frames']} frames ({r['dropped_frames']} dropped), {r['detections']} detections, "
            f"{r['tracks']} tracks, {r['fps']:.1f} FPS, latency per frame mean {lat['mean']:.1f} ms, "
            f"p95 {lat['p95']:.1f} ms" + (" (interrupted)" if r["interrupted"] else "")
        )
    )
    if r["counts"]:
        t = Table(title="counts", title_justify="left")
        for h in ("counter", "class", "in", "out"):
            t.add_column(h, justify="left" if h in ("counter", "class") else "right")
        for c, per in r["counts"].items():
            for name, v in per.items():
                t.add_row(c, escape(name), str(v["in"]), str(v["out"]))
        out.print(t)
    t = Table(title="per-stage timing (ms per frame)", title_justify="left")
    for h in ("stage", "mean", "p95", "share"):
        t.add_column(h, justify="left" if h == "stage" else "right")
    for st in r["stages"]:
        t.add_row(st["stage"], f"{st['mean_ms']:.2f}", f"{st['p95_ms']:.2f}", f"{100 * st['share']:.0f}%")
    out.print(t)
    if r["output"]["video"]:
        out.print(
            f"video written to {r['output']['video']} ({r['output']['video_frames']} frames, "
            f"{r['output']['video_backend']})"
        )
    plates = r.get("plates")
    if plates:
        ms = plates["ms_per_read"]
        out.print(
            f"plates: {plates['tracks_read']} of {plates['tracks_tried']} vehicles read ({plates['reads']} reads, "
            f"{ms['mean']:.0f} ms mean, {plates['skipped_busy']} crops skipped while the readers were busy)"
        )
        for tid, p in list(plates["plates"].items())[:20]:
            out.print(escape(f"  track {tid} ({p['class']}): {p['text']}  {p['confidence']:.2f}  frame {p['frame']}"))
    for note in r["output"].get("notes", []):
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def bench_table(report: dict):
    """bench's terminal table: fits 80 columns with the longest variant name whole; every other column
    (p99, mean and spread, memory, sizes) is in the reports."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    t = Table(
        title=escape(f"{report['model']['name']}: ms per batch (median, p95), images/s, speedup"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for h in ("backend", "batch", "model", "p95", "img/s", "e2e", "speedup"):
        t.add_column(h, justify="left" if h == "backend" else "right", no_wrap=True)
    for r in report["rows"]:
        if not r.get("ok"):
            t.add_row(escape(r["backend"]), str(r["batch"]), "failed", "", "", "", "")
            continue
        m = r["model_ms"]
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        t.add_row(
            escape(r["backend"]),
            str(r["batch"]),
            f"{m['median']:.2f}",
            f"{m['p95']:.2f}",
            f"{r['throughput_ips']:,.0f}",
            f"{r['e2e_ms']['median']:.2f}",
            speedup,
        )
    return t


@contextlib.contextmanager
def frame_progress(label: str, total: float | None):
    """A transient progress bar of frames with the running FPS; yields `tick(n_frames)`."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total, fps="")
        t0 = time.perf_counter()
        seen = [0]

        def tick(k: int) -> None:
            seen[0] += k
            progress.update(task, advance=k, fps=f"{seen[0] / max(time.perf_counter() - t0, 1e-9):.1f} FPS")

        yield tick
