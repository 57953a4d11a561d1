"""espeak-ng through its C library, served by a lean forking helper process.

Why not the library in this process: espeak-ng keeps synthesis state between
utterances (pitch flutter, echo buffer, noise generator), so the same text twice in one
process gives different samples, and a corpus would depend on which worker rendered
what. Why not the ``espeak-ng`` command: each run pays process start and data loading
(about 19 ms of CPU, against about 12 ms here).

Each process that renders starts one helper (:mod:`._espeak_zygote`, standard library
only), which initialises the library once and serves every request from a fresh fork
of itself, so the output depends on the request alone. The helper is small, so forks
stay cheap even when the caller has imported torch.

:func:`helper` returns None where the helper cannot start (no ``fork``, no library);
the caller then falls back to the command.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from multiprocessing.util import Finalize
from pathlib import Path

import numpy as np

from speechloop.errors import AudioError

_REQUEST = struct.Struct("<iiII")
_REPLY = struct.Struct("<cI")
_SCRIPT = Path(__file__).with_name("_espeak_zygote.py")


class EspeakHelper:
    """A running helper process and the pipes to it (one user at a time)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._lock = threading.Lock()
        self.sample_rate = struct.unpack("<i", self._read(4))[0]
        if self.sample_rate <= 0:
            self.close()
            raise AudioError("libespeak-ng failed to initialise (espeak-ng-data missing?)")

    def _read(self, size: int) -> bytes:
        """Exactly ``size`` bytes from the helper; AudioError if it has gone."""
        assert self._proc.stdout is not None
        data = self._proc.stdout.read(size)
        if data is None or len(data) != size:
            raise AudioError("the espeak-ng helper process exited unexpectedly")
        return data

    def synthesize(self, voice: str, wpm: int, pitch: int, text: str) -> np.ndarray:
        """Float32 samples at :attr:`sample_rate` of ``text`` spoken by ``voice``."""
        voice_b, text_b = voice.encode(), text.encode()
        request = _REQUEST.pack(wpm, pitch, len(voice_b), len(text_b)) + voice_b + text_b
        assert self._proc.stdin is not None
        with self._lock:
            try:
                self._proc.stdin.write(request)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise AudioError("the espeak-ng helper process is gone") from exc
            status, size = _REPLY.unpack(self._read(_REPLY.size))
            body = self._read(size)
        if status != b"O":
            raise AudioError(body.decode(errors="replace"))
        if size == 0:
            raise AudioError(f"espeak-ng voice {voice!r} produced no audio for {text!r}")
        return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0

    def close(self) -> None:
        """Stop the helper (it also stops by itself when this process exits)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


_HELPERS: dict[int, EspeakHelper | None] = {}
_START_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    """A forked child gets a fresh lock (the parent's may have been held at the fork)."""
    global _START_LOCK
    _START_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def helper() -> EspeakHelper | None:
    """This process's helper (started on first use; a forked child starts its own)."""
    pid = os.getpid()
    with _START_LOCK:
        if pid not in _HELPERS:
            _HELPERS[pid] = _start()
        return _HELPERS[pid]


def _start() -> EspeakHelper | None:
    """Start a helper for this process; None where it cannot run."""
    try:
        started = EspeakHelper() if hasattr(os, "fork") else None
    except (OSError, AudioError):
        return None
    if started is not None:
        # runs at exit of this process, also in multiprocessing workers (unlike atexit)
        Finalize(started, started.close, exitpriority=10)
    return started
