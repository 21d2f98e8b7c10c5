"""TCP framing: each message or acknowledgement is its JSON text followed by ``@@`` (Jiangsu style)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

DELIMITER = b"@@"
READ_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class FrameTooLarge:
    """A frame passed the size limit before its delimiter came; its bytes were skipped up to the delimiter."""

    limit: int


def frame(message: bytes) -> bytes:
    """A message (which never holds ``@``: see codec.escape_at) as one frame."""
    if b"@" in message:
        raise ValueError("a framed message must not contain '@' (write it as \\u0040)")
    return message + DELIMITER


async def read_frames(reader: asyncio.StreamReader, max_bytes: int,
                      idle_timeout_s: float | None = None) -> AsyncIterator[bytes | FrameTooLarge]:
    """Frames as they arrive (white space around them stripped, empty ones skipped) until the peer closes or is
    silent for ``idle_timeout_s``.

    A frame longer than ``max_bytes`` is not kept: it is reported once as FrameTooLarge and skipped to its end,
    so one oversize message costs at most ``max_bytes`` of memory and the frames after it still arrive.
    """
    buffer = bytearray()
    skipping = False
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(READ_BYTES), idle_timeout_s)
        except TimeoutError:
            return
        if not chunk:
            return
        buffer += chunk
        while True:
            end = buffer.find(DELIMITER)
            if end < 0:
                break
            body = bytes(buffer[:end]).strip()
            del buffer[: end + len(DELIMITER)]
            if skipping:
                skipping = False
            elif len(body) > max_bytes:
                yield FrameTooLarge(max_bytes)
            elif body:
                yield body
        if len(buffer) > max_bytes:
            if not skipping:
                skipping = True
                yield FrameTooLarge(max_bytes)
            del buffer[:-1]  # keep a last '@' that may begin the delimiter
