"""An upload as it arrives: the multipart body parsed while it streams in, its file part written inside
the data folder, stopped at the size limit and when the client stalls.

Why not Starlette's `UploadFile`: it reads the whole body first, spooling it to the system temp folder,
so a 200 MB upload against a 5 MB limit was received, stored in full outside the data folder, and only
then refused. python-multipart (the parser Starlette itself uses) parses chunk by chunk.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

PART_OVERHEAD = 64 * 1024  # multipart headers, boundaries and other parts beyond the file's own bytes


class UploadError(Exception):
    """A refused upload: the HTTP status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _FilePart:
    """python-multipart's callbacks: the part named `file` goes to `path`, up to `limit` bytes."""

    def __init__(self, folder: Path, limit: int, suffixes: tuple[str, ...]):
        self.folder, self.limit, self.suffixes = folder, limit, suffixes
        self.path: Path | None = None
        self.suffix = ""
        self.size = 0
        self.error: UploadError | None = None
        self._file = None
        self._header, self._value, self._headers = b"", b"", {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: setattr(self, "_header", self._header + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self):
        self._headers = {}

    def _header_end(self):
        self._headers[self._header.decode("latin-1").lower()] = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self):
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        if params.get(b"name") != b"file" or self.error:
            return
        if self.path is not None:
            self.error = UploadError(400, "one file per upload")
            return
        suffix = Path(params.get(b"filename", b"").decode("utf-8", "replace")).suffix.lower()
        if suffix not in self.suffixes:
            self.error = UploadError(400, f"uploads must be video files ({', '.join(self.suffixes)})")
            return
        self.suffix = suffix
        self.path = self.folder / f".{uuid.uuid4().hex}{suffix}.partial"
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in _end or close())

    def _data(self, data: bytes, start: int, end: int):
        if self._file is None or self.error:
            return
        self.size += end - start
        if self.size > self.limit:
            self.error = UploadError(413, f"the upload is larger than {self.limit // 2**20} MB")
            return
        self._file.write(data[start:end])

    def _end(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self, keep: bool):
        self._end()
        if not keep and self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(
    request, folder: Path, limit: int, suffixes: tuple[str, ...], timeout_s: float
) -> tuple[Path, str, int]:
    """The request's `file` part written to a partial file in `folder`: (that file, its suffix, its size).
    UploadError when the body is not multipart, has no file part, passes `limit` bytes (a Content-Length
    that says so is refused before the body is read) or stalls for `timeout_s`; nothing is left behind
    then."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    too_large = UploadError(413, f"the upload is larger than {limit // 2**20} MB")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit + PART_OVERHEAD):
        raise too_large

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(415, "uploads are multipart/form-data with the video in a part named file")
    part = _FilePart(folder, limit, suffixes)
    parser = MultipartParser(params[b"boundary"], part.callbacks())
    chunks = request.stream().__aiter__()
    ok, received = False, 0
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout_s)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UploadError(408, f"the upload stalled (nothing arrived for {timeout_s:g} s)") from None
            received += len(chunk)
            if received > limit + PART_OVERHEAD:  # a body without a length, or longer than it said
                raise too_large
            try:
                parser.write(chunk)
            except Exception as e:  # python-multipart's parse errors
                raise UploadError(400, f"not a well-formed multipart body ({type(e).__name__})") from None
            if part.error:
                raise part.error
        parser.finalize()
        if part.error:
            raise part.error
        if part.path is None:
            raise UploadError(400, "no part named file in the upload")
        ok = True
        return part.path, part.suffix, part.size
    finally:
        part.close(keep=ok)
