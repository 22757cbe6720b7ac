"""Incremental decoding of a response body's Content-Encoding (gzip, deflate or none) under a hard cap on
the DECODED size, so a small gzip bomb never inflates in memory. Used by
:class:`~visionkit.gemini.transport.Transport`; pure (no IO)."""

from __future__ import annotations

import zlib

from ..errors import ResponseError

__all__ = ["Decoder"]


class Decoder:
    """Decode a Content-Encoding incrementally with a hard cap on the output size."""

    def __init__(self, encoding: str, limit: int):
        self.limit = limit
        self.size = 0
        encoding = encoding.strip().lower()
        self._gzip = encoding in ("gzip", "x-gzip")
        if encoding in ("", "identity"):
            self._z = None
        elif self._gzip:
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise ResponseError(f"the server sent Content-Encoding {encoding!r}, which was not asked for "
                                "(only gzip and deflate are accepted)")

    def feed(self, data: bytes) -> bytes:
        if self._z is None:
            return self._count(data)
        out = []
        while data:
            piece = self._z.decompress(data, self.limit - self.size + 1)
            out.append(self._count(piece))
            data = self._z.unconsumed_tail
            if not data and self._z.eof and self._gzip and self._z.unused_data:
                data = self._z.unused_data  # gzip allows several members, one after another
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return b"".join(out)

    def flush(self) -> bytes:
        return self._count(self._z.flush()) if self._z is not None else b""

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise ResponseError(f"the response body is over {self.limit // (1024 * 1024)} MiB once decoded "
                                "(the documented limit, far above any real answer); refused and not saved")
        return data
