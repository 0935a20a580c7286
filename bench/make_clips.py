"""1920x1080 clips of the shared 720p traffic clip (the assets have no 1080p video): H.264 and VP9.

Usage: python bench/make_clips.py OUT_DIR [--frames N]
Writes OUT_DIR/traffic_1080p_h264.mp4 and OUT_DIR/traffic_1080p_vp9.webm. Every frame is upscaled
with OpenCV's INTER_LINEAR and encoded by PyAV (libx264 CRF 28 veryfast; libvpx-vp9 CRF 40,
realtime speed 8), at the source's 25 fps; N frames (default 751: the whole clip; more repeats it).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path


def frames_1080p(src: Path, n: int):
    import av
    import cv2

    made = 0
    while made < n:
        with av.open(str(src)) as inp:
            for frame in inp.decode(video=0):
                if made >= n:
                    return
                yield cv2.resize(frame.to_ndarray(format="bgr24"), (1920, 1080), interpolation=cv2.INTER_LINEAR)
                made += 1


def encode(src: Path, out: Path, codec: str, options: dict, n: int) -> None:
    import av

    with av.open(str(out), "w") as dst:
        vout = dst.add_stream(codec, rate=Fraction(25))
        vout.width, vout.height, vout.pix_fmt = 1920, 1080, "yuv420p"
        vout.options = options
        for img in frames_1080p(src, n):
            for packet in vout.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                dst.mux(packet)
        for packet in vout.encode():
            dst.mux(packet)
    print(f"{out}: {n} frames, 1920x1080, {out.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--frames", type=int, default=751)
    ap.add_argument("--source", type=Path, default=None)
    a = ap.parse_args()
    from yolo_accel.assets import find_asset

    src = a.source or find_asset("videos/highway_traffic_720p.mp4")
    a.out.mkdir(parents=True, exist_ok=True)
    encode(src, a.out / "traffic_1080p_h264.mp4", "libx264", {"crf": "28", "preset": "veryfast"}, a.frames)
    encode(
        src,
        a.out / "traffic_1080p_vp9.webm",
        "libvpx-vp9",
        {"crf": "40", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
        a.frames,
    )


if __name__ == "__main__":
    main()
