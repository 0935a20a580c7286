"""One reader of a stream's MJPEG frames for any number of viewers.

The stream's process serves its annotated frames on a loopback port. Were every viewer relayed
its own connection, each would hold a server thread and make the stream's process send every frame
once per viewer; instead one thread per watched stream reads the frames and the viewers, plain
asyncio tasks, are handed the latest one as it arrives (a slow viewer skips frames rather than
falling behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
from collections.abc import AsyncIterator, Callable

from ..video.sinks import read_mjpeg_part

BOUNDARY = b"frame"


class MjpegRelay:
    """Reads frames from http://127.0.0.1:`port`/ while `alive()` and viewers remain."""

    def __init__(self, port: int, alive: Callable[[], bool], loop: asyncio.AbstractEventLoop):
        self.port, self.alive, self.loop = port, alive, loop
        self.latest: bytes | None = None
        self.seq = 0
        self.viewers = 0
        self._changed = asyncio.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- the reader thread -----------------------------------------------------------------------
    def _ensure_reader(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._read, name=f"mjpeg-relay{self.port}", daemon=True)
                self._thread.start()

    def _publish(self, jpeg: bytes | None) -> None:  # in the event loop
        self.latest, self.seq = jpeg, self.seq + 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _read(self) -> None:
        deadline = time.monotonic() + 30  # the stream's MJPEG server starts with its first frames
        try:
            while self.alive() and self.viewers > 0:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                try:
                    conn.request("GET", "/")
                    resp = conn.getresponse()
                    while self.alive() and self.viewers > 0:
                        jpeg = read_mjpeg_part(resp)
                        if jpeg is None:
                            return
                        self.loop.call_soon_threadsafe(self._publish, jpeg)
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.1)
                finally:
                    conn.close()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                self.loop.call_soon_threadsafe(self._publish, None)

    # -- viewers ---------------------------------------------------------------------------------
    async def frames(self) -> AsyncIterator[bytes]:
        """multipart/x-mixed-replace parts, the newest frame each time, until the stream or the reader ends."""
        self.viewers += 1
        try:
            self._ensure_reader()
            seen = -1
            while self.alive():  # checked at every frame too: a server shutting down ends its viewers
                if self.seq == seen or self.latest is None:
                    changed = self._changed
                    try:
                        await asyncio.wait_for(changed.wait(), timeout=5.0)
                    except TimeoutError:
                        if not self.alive():
                            return
                        self._ensure_reader()  # the reader gave up waiting for the first frames
                        continue
                    if self.latest is None:
                        if not self.alive():
                            return
                        continue
                seen, jpeg = self.seq, self.latest
                head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(jpeg))
                yield head + jpeg + b"\r\n"
        finally:
            self.viewers -= 1
