"""`yolo-accel video SOURCES --ray`: one video engine per GPU (or per CPU worker) as a Ray actor, streams
given to the engines by load, events gathered exactly once, and a dead engine's streams started again
on another.

Exactly once: an engine reports, per stream, the last frame whose tracking, counting and events are
done (its workers flush a frame's events before they count the frame), and hands over only the events
up to that frame. The driver writes those and remembers the frame. When an engine dies, each of its
unfinished streams starts again on a live engine at the next frame (files and folders resume there;
live streams start from what they show now), so no frame's events are written twice and none of the
frames handed over is lost. The tracker starts afresh at a restart: track ids begin again there.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ModelError, SettingsError, message


@dataclass
class StreamJob:
    """A piece of one stream for one engine: from `start_frame`, `max_frames` frames at most."""

    key: int  # the stream's position in the whole job
    source: str
    start_frame: int = 0
    max_frames: int | None = None


class EventsTail:
    """The events an engine writes to a file, handed over only up to a finished frame: each call gives
    the events of frames up to `upto` not given before (whole lines only; later ones wait)."""

    def __init__(self, path: str):
        self.path, self.offset, self.pending = path, 0, []

    def take(self, upto: float) -> list[dict]:
        events = self.pending + self._read()
        self.pending = [e for e in events if e["frame"] > upto]
        return [e for e in events if e["frame"] <= upto]

    def _read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # whole lines only: the rest is being written
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


@dataclass
class _Run:
    engine: object
    jobs: list[StreamJob]
    tails: list[EventsTail]  # per job: the events file this engine writes
    thread: threading.Thread
    result: dict | None = None
    error: str | None = None


class EngineWorker:
    """The body of the engine actor: runs pieces of streams through VideoEngine on its device. Each
    `start` is a run of its own (its own detector), so a stream taken over from a dead engine runs
    beside the streams this one already has."""

    def __init__(
        self, detector_kwargs: dict, settings, engine, stride: int, retries: int, nvdec: bool, loop: bool = False
    ):
        self.kwargs, self.settings, self.es = detector_kwargs, settings, engine
        self.stride, self.retries, self.nvdec, self.loop = stride, retries, nvdec, loop
        self.runs: dict[str, _Run] = {}
        self.folder = tempfile.mkdtemp(prefix="yolo-accel-ray-")
        # the detector is loaded once here so that a model that cannot load fails at placement
        from ..detector import Detector

        Detector(**self.kwargs).close()

    def where(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def start(self, run_id: str, jobs: list[StreamJob], plain: bool = False) -> None:
        """Start a run of `jobs`. `plain`: a second run beside a running one in this process, whose CUDA
        graph captures would fail while the other run uses the GPU: its detector captures none."""
        from ..detector import Detector
        from ..video.engine import VideoEngine
        from ..video.sources import open_source

        kwargs = dict(self.kwargs)
        if plain and kwargs.get("torch_options") is not None:
            kwargs["torch_options"] = replace(kwargs["torch_options"], cuda_graph=False)
        det = Detector(**kwargs)
        nvdec_device = str(det.backend.device) if self.nvdec else None
        sources, settings, events = [], [], []
        for j in jobs:
            path = os.path.join(self.folder, f"{run_id}-{j.key}.jsonl")
            events.append(path)
            settings.append(replace(self.settings, events=path))
            try:
                sources.append(
                    open_source(
                        j.source,
                        self.stride,
                        j.max_frames,
                        self.retries,
                        nvdec_device=nvdec_device,
                        loop=self.loop,
                        start_frame=j.start_frame,
                    )
                )
            except Exception as e:  # that stream fails, the others run
                sources.append(e)
        engine = VideoEngine(det, sources, settings, self.es)
        run = _Run(engine, jobs, [EventsTail(p) for p in events], threading.Thread(daemon=True))

        def body():
            try:
                run.result = engine.run()
            except BaseException as e:
                run.error = message(e)
            finally:
                det.close()

        run.thread = threading.Thread(target=body, daemon=True, name=f"engine-{run_id}")
        self.runs[run_id] = run
        run.thread.start()

    def poll(self, run_id: str) -> dict:
        """Per stream: the last finished frame and the events up to it not handed over yet; at the end,
        the summaries."""
        run = self.runs[run_id]
        finished = run.result is not None or run.error is not None  # read first: then every event is in
        last = dict(run.engine.last_done)  # read before the files: their events are in by now
        out = {}
        for sid, job in enumerate(run.jobs):
            upto = float("inf") if finished else last.get(sid, -1)
            out[job.key] = {"last": last.get(sid), "events": run.tails[sid].take(upto)}
        reply = {"streams": out, "finished": finished, "error": run.error}
        if finished and run.result is not None:
            reply["summaries"] = {job.key: s for job, s in zip(run.jobs, run.result["streams"])}
        if finished:
            del self.runs[run_id]
        return reply

    def stop(self) -> None:
        for run in self.runs.values():
            run.engine.stop("interrupted")


@dataclass
class _StreamState:
    key: int
    source: str
    max_frames: int | None
    live: bool
    load: float
    last: int = -1  # the last frame index whose events are written
    frames: int = 0
    done: bool = False
    error: str | None = None
    events_file: object = None
    counts: dict = field(default_factory=dict)
    n_events: int = 0
    pieces: list[dict] = field(default_factory=list)  # where each piece ran and from which frame
    detections: int = 0


def _load(spec: str, max_frames: int | None, loop: bool = False) -> tuple[bool, float]:
    """(live, expected frames) of a source: files by their frame count, live streams as very long."""
    live = spec.isdigit() or "://" in spec
    if live or loop:
        return live, float(max_frames or 1e9)
    p = Path(spec)
    n = 0.0
    if p.is_dir():
        n = float(sum(1 for _ in p.iterdir()))
    elif p.is_file():
        import cv2

        cap = cv2.VideoCapture(str(p))
        n = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
    n = n or 1.0
    return False, float(min(n, max_frames)) if max_frames else n


def read_sources_file(path: str | Path) -> list[str]:
    """One source per line; blank lines and lines starting with # are skipped."""
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f"--sources-file {p}: no such file")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    out = [ln for ln in lines if ln and not ln.startswith("#")]
    if not out:
        raise SettingsError(f"--sources-file {p}: no sources in it")
    return out


class RayVideoJob:
    """Streams over the engines of a Ray cluster. `run()` returns the summary; `actors` are the engines."""

    def __init__(
        self,
        ray,
        sources: list[str],
        detector_kwargs: dict,
        settings,
        engine,
        events: list[str | None],
        engines: int,
        gpu: bool,
        stride: int = 1,
        max_frames: int | None = None,
        retries: int = 5,
        nvdec: bool = False,
        loop: bool = False,
        poll_s: float = 0.25,
    ):
        self.ray, self.gpu, self.poll_s, self.stride = ray, gpu, poll_s, stride
        self.streams = []
        for i, spec in enumerate(sources):
            live, load = _load(spec, max_frames, loop)
            st = _StreamState(i, spec, max_frames, live, load)
            if events[i]:
                st.events_file = open(events[i], "w", encoding="utf-8")  # noqa: SIM115 (closed in run)
            self.streams.append(st)
        options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        actor_cls = ray.remote(**options)(EngineWorker)
        self._new_actor = lambda: actor_cls.remote(detector_kwargs, settings, engine, stride, retries, nvdec, loop)
        self.actors = [self._new_actor() for _ in range(engines)]
        self.alive = list(range(engines))
        try:
            self.where = ray.get([a.where.remote() for a in self.actors])
        except ray.exceptions.RayError as e:  # the model or the device failed in the engine's start
            from .cluster import failure_line

            for a in self.actors:
                ray.kill(a)
            raise ModelError(f"the video engines could not start on Ray: {failure_line(e)}") from None
        self.load = [0.0] * engines
        self.runs: dict[str, tuple[int, list[int]]] = {}  # run id -> (engine, stream keys)
        self._n = 0
        self.restarts = 0
        self._stop = False
        self.t_first: float | None = None  # when the first frames were done (start-up ends)

    def stop(self) -> None:
        self._stop = True
        for i in self.alive:
            self.actors[i].stop.remote()

    def _start(self, engine: int, keys: list[int], plain: bool = False) -> None:
        jobs = []
        for k in keys:
            st = self.streams[k]
            start = 0 if (st.live or st.last < 0) else st.last + self.stride
            left = None if st.max_frames is None else st.max_frames - st.frames
            if left is not None and left <= 0:
                st.done = True
                continue
            jobs.append(StreamJob(k, st.source, start, left))
            st.pieces.append({"engine": engine, "host": self.where[engine]["host"], "start_frame": start})
            self.load[engine] += st.load
        if not jobs:
            return
        self._n += 1
        run_id = f"r{self._n}"
        try:
            self.ray.get(self.actors[engine].start.remote(run_id, jobs, plain))
        except self.ray.exceptions.RayActorError as e:
            for j in jobs:
                self.load[engine] -= self.streams[j.key].load
                self.streams[j.key].pieces.pop()
            self.runs[run_id] = (engine, [j.key for j in jobs])  # handed on with the engine's other runs
            self._engine_died(engine, message(e))
            return
        self.runs[run_id] = (engine, [j.key for j in jobs])

    def _least_loaded(self) -> int:
        return min(self.alive, key=lambda i: self.load[i])

    def run(self, progress: Callable[[int], None] | None = None) -> dict:
        t0 = time.perf_counter()
        # longest first onto the least loaded engine (LPT): close to even finishing times; each engine
        # then runs its streams in one engine run, batched together on its device
        planned = dict.fromkeys(self.alive, 0.0)
        plan: dict[int, list[int]] = {i: [] for i in self.alive}
        for st in sorted(self.streams, key=lambda s: -s.load):
            e = min(planned, key=planned.get)
            planned[e] += st.load
            plan[e].append(st.key)
        for e, keys in plan.items():
            self._start(e, keys)
        try:
            while self.runs:
                time.sleep(self.poll_s)
                for run_id, (engine, keys) in list(self.runs.items()):
                    self._poll(run_id, engine, keys, progress)
        finally:
            for st in self.streams:
                if st.events_file is not None:
                    st.events_file.close()
        t_end = time.perf_counter()
        summary = self._summary(t_end - t0)
        if self.t_first is not None and t_end > self.t_first:
            # the rate once every engine is running: start-up (model load, graph capture, decoders) left out
            summary["fps_after_start"] = (summary["frames"] - self.frames_at_first) / (t_end - self.t_first)
        return summary

    def _poll(self, run_id: str, engine: int, keys: list[int], progress) -> None:
        ray = self.ray
        try:
            reply = ray.get(self.actors[engine].poll.remote(run_id), timeout=120)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
            self._engine_died(engine, message(e))
            return
        for key, part in reply["streams"].items():
            st = self.streams[int(key)]
            before = st.frames
            self._take(st, part)
            if st.frames > before:
                if self.t_first is None:
                    self.t_first, self.frames_at_first = time.perf_counter(), st.frames - before
                if progress:
                    progress(st.frames - before)
        if reply["finished"]:
            del self.runs[run_id]
            for key in keys:
                st = self.streams[key]
                s = (reply.get("summaries") or {}).get(key)
                if s is not None:
                    st.detections += s["detections"]
                    st.error = s["error"]
                elif reply["error"]:
                    st.error = reply["error"]
                st.done = True
                self.load[engine] -= st.load

    def _take(self, st: _StreamState, part: dict) -> None:
        for ev in part["events"]:
            if ev["frame"] <= st.last:
                continue  # never twice (a piece starts after the last frame written)
            if st.events_file is not None:
                st.events_file.write(json.dumps(ev) + "\n")
            st.n_events += 1
            if "counter" in ev:
                per = st.counts.setdefault(ev["counter"], {}).setdefault(ev["class_name"], {"in": 0, "out": 0})
                per[ev["direction"]] += 1
        if st.events_file is not None:
            st.events_file.flush()
        if part["last"] is not None and part["last"] > st.last:
            first = st.pieces[-1]["start_frame"] if st.pieces else 0
            done_before = sum(p.get("frames", 0) for p in st.pieces[:-1])
            st.pieces[-1]["frames"] = (part["last"] - first) // self.stride + 1
            st.frames = done_before + st.pieces[-1]["frames"]
            st.last = part["last"]

    def _engine_died(self, engine: int, why: str) -> None:
        if engine in self.alive:
            self.alive.remove(engine)
        orphans = []
        for run_id, (e, keys) in list(self.runs.items()):
            if e == engine:
                del self.runs[run_id]
                orphans += [k for k in keys if not self.streams[k].done]
        if self._stop:
            return
        if not orphans:
            return
        for k in orphans:
            st = self.streams[k]
            if st.pieces and "died" not in st.pieces[-1]:
                st.pieces[-1]["died"] = why
        if not self.alive:
            for k in orphans:
                self.streams[k].error, self.streams[k].done = f"every engine died (last: {why})", True
            return
        self.restarts += len(orphans)
        target = self._replacement()
        if target is not None:  # all of them in one run of a new engine, batched together as before
            self._start(target, orphans)
        else:  # beside a live engine's own run, in the same process: without CUDA graph captures there
            self._start(self._least_loaded(), orphans, plain=True)

    def _replacement(self, wait_s: float = 60.0) -> int | None:
        """A new engine where the dead one's device was freed (the usual case on one machine); None when
        the cluster has no room for one (the orphans then join the least loaded engine)."""
        actor = self._new_actor()
        try:
            where = self.ray.get(actor.where.remote(), timeout=wait_s)
        except Exception:  # no free device in time, or it failed to start
            self.ray.kill(actor)
            return None
        self.actors.append(actor)
        self.where.append(where)
        self.load.append(0.0)
        self.alive.append(len(self.actors) - 1)
        return len(self.actors) - 1

    def _summary(self, wall: float) -> dict:
        frames = sum(st.frames for st in self.streams)
        per_engine: dict[int, int] = {}
        for st in self.streams:
            for p in st.pieces:
                per_engine[p["engine"]] = per_engine.get(p["engine"], 0) + p.get("frames", 0)
        return {
            "streams": [
                {
                    "source": st.source,
                    "frames": st.frames,
                    "detections": st.detections,
                    "counts": st.counts,
                    "events": st.n_events,
                    "pieces": st.pieces,
                    "error": st.error,
                }
                for st in self.streams
            ],
            "frames": frames,
            "wall_s": wall,
            "fps": frames / wall if wall > 0 else 0.0,
            "engines": [
                {**w, "frames": per_engine.get(i, 0), "alive": i in self.alive} for i, w in enumerate(self.where)
            ],
            "restarts": self.restarts,
        }
