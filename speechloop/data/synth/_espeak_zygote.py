"""A lean process that synthesises with libespeak-ng, one fork per request.

Run as a script by :mod:`speechloop.data.synth.espeak` (``python -I -S <this file>``),
importing the standard library only, so that forking it is cheap whatever the parent
imported (a process holding torch takes ~80 ms per fork, this one ~1 ms). It loads the
library once and never synthesises itself: every request is served by a fresh fork,
which starts from the same state, so the output depends on the request alone
(espeak-ng keeps synthesis state between utterances within one process).

Protocol on stdin/stdout (little endian). At start: ``<i`` sample rate (<= 0: failed).
Request: ``<iiII`` wpm, pitch, len(voice), len(text), then voice and text (UTF-8).
Reply: ``<cI`` status (``O`` samples / ``E`` message), length, then 16-bit PCM or text.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

_REQUEST = struct.Struct("<iiII")
_REPLY = struct.Struct("<cI")
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _VoiceSelect(ctypes.Structure):
    """``espeak_VOICE``: selection by language (with ``+variant``)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def _read_exact(fd: int, size: int) -> bytes:
    """Exactly ``size`` bytes from ``fd``; b"" at end of input."""
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return b""
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _synthesise(lib: ctypes.CDLL, chunks: list[bytes], voice: bytes, wpm: int, pitch: int,
                text: bytes) -> bytes:  # fmt: skip
    """Reply bytes for one request (runs in the forked child)."""
    if lib.espeak_SetVoiceByName(voice) != 0:
        select = _VoiceSelect(None, voice, None, 0, 0, 0, 0, 0, None)
        if lib.espeak_SetVoiceByProperties(ctypes.byref(select)) != 0:
            message = b"espeak-ng has no voice " + voice
            return _REPLY.pack(b"E", len(message)) + message
    lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE
    lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
    raw = text + b"\0"
    lib.espeak_Synth(raw, len(raw), 0, 1, 0, 0, None, None)
    lib.espeak_Synchronize()
    pcm = b"".join(chunks)
    return _REPLY.pack(b"O", len(pcm)) + pcm


def _serve_one(lib: ctypes.CDLL, chunks: list[bytes], request: bytes, out_fd: int) -> None:
    """Fork, let the child synthesise into a pipe, relay its reply (or an error)."""
    wpm, pitch, n_voice, n_text = _REQUEST.unpack(request)
    body = _read_exact(0, n_voice + n_text)
    voice, text = body[:n_voice], body[n_voice:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            _write_all(write_fd, _synthesise(lib, chunks, voice, wpm, pitch, text))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    parts = []
    while chunk := os.read(read_fd, 1 << 16):
        parts.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    reply = b"".join(parts)
    if status != 0 or len(reply) < _REPLY.size:
        message = f"espeak-ng child failed (wait status {status})".encode()
        reply = _REPLY.pack(b"E", len(message)) + message
    _write_all(out_fd, reply)


def main() -> None:
    """Initialise the library, announce the sample rate, serve requests until EOF."""
    out_fd = sys.stdout.fileno()
    lib = ctypes.CDLL("libespeak-ng.so.1")
    c = ctypes
    lib.espeak_Synth.argtypes = [c.c_char_p, c.c_size_t, c.c_uint, c.c_int, c.c_uint, c.c_uint,
                                 c.c_void_p, c.c_void_p]  # fmt: skip
    chunks: list[bytes] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0:
            chunks.append(ctypes.string_at(wav, 2 * count))
        return 0

    callback = _CALLBACK(collect)
    rate = int(lib.espeak_Initialize(2, 0, None, 0))  # AUDIO_OUTPUT_SYNCHRONOUS
    if rate > 0:
        lib.espeak_SetSynthCallback(callback)
        lib.espeak_SetVoiceByName(b"en-us")  # load the English dictionary once
    _write_all(out_fd, struct.pack("<i", rate))
    while rate > 0:
        request = _read_exact(0, _REQUEST.size)
        if not request:
            break
        _serve_one(lib, chunks, request, out_fd)


if __name__ == "__main__":
    main()
