"""A real RTSP server on loopback for the tests: GStreamer's (gst-rtsp-server, through Debian's python3-gi).

    /usr/bin/python3 tests/rtsp_server.py PORT VIDEO

serves VIDEO, re-encoded as 640x360 H.264 at its own frame rate, at rtsp://127.0.0.1:PORT/cam, and
prints "ready" once it listens. It runs under the system Python (where `gi` lives), not the project's.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, video = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( filesrc location="{video}" ! decodebin ! videoconvert ! videoscale ! video/x-raw,width=640,height=360 '
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=1500 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
