"""A 1920x1080 H.264 clip from the shared 720p traffic clip (the assets have no 1080p video).

Usage: python bench/make_1080p.py OUT.mp4 [SOURCE.mp4]
Every frame is upscaled with OpenCV's INTER_LINEAR and encoded with libx264 (CRF 23) by PyAV,
at the source's frame rate; 751 frames.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path


def main(out: Path, src: Path) -> None:
    import av
    import cv2

    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        vin = inp.streams.video[0]
        rate = Fraction(vin.average_rate) if vin.average_rate else Fraction(25)
        vout = dst.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = 1920, 1080, "yuv420p"
        vout.options = {"crf": "23", "preset": "veryfast"}
        n = 0
        for frame in inp.decode(vin):
            big = cv2.resize(frame.to_ndarray(format="bgr24"), (1920, 1080), interpolation=cv2.INTER_LINEAR)
            for packet in vout.encode(av.VideoFrame.from_ndarray(big, format="bgr24")):
                dst.mux(packet)
            n += 1
        for packet in vout.encode():
            dst.mux(packet)
    print(f"{out}: {n} frames, 1920x1080, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    from yolo_accel.assets import find_asset

    default = find_asset("videos/highway_traffic_720p.mp4")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
