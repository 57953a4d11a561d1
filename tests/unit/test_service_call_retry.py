"""The gateway's call to a model service: one retry on a dropped connection only."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from service.app import _call
from speechloop.errors import InvalidInput, ModelUnavailable


def _flaky(failures: list[BaseException]):
    """A call factory that raises the given errors in turn, then answers "ok"."""
    calls = {"n": 0}

    def factory():
        async def once():
            calls["n"] += 1
            if failures:
                raise failures.pop(0)
            return "ok"

        return once()

    return factory, calls


def test_a_dropped_connection_is_retried_once():
    """BentoML closing its session under a call (issue #5540) costs a retry, not a 503."""
    factory, calls = _flaky([aiohttp.ServerDisconnectedError()])
    assert asyncio.run(_call("asr", factory)) == "ok"
    assert calls["n"] == 2


def test_a_reply_stream_closed_under_the_read_is_retried_once():
    """aiohttp's ``RuntimeError("Connection closed.")`` while reading the reply is the same
    dropped connection (seen once in a 5-minute load run): retried, not a 503."""
    factory, calls = _flaky([RuntimeError("Connection closed.")])
    assert asyncio.run(_call("spk", factory)) == "ok"
    assert calls["n"] == 2


def test_two_dropped_connections_are_a_503_naming_the_service():
    """A service that drops the connection twice is unavailable, named in the error."""
    factory, calls = _flaky([aiohttp.ServerDisconnectedError()] * 2)
    with pytest.raises(ModelUnavailable, match="the spk model service did not answer"):
        asyncio.run(_call("spk", factory))
    assert calls["n"] == 2


@pytest.mark.parametrize("error", [InvalidInput("bad hotword 'x'"), RuntimeError("boom")])
def test_other_errors_are_not_retried(error):
    """Client faults pass through unchanged and other failures are a 503, both at once."""
    factory, calls = _flaky([error])
    with pytest.raises((InvalidInput, ModelUnavailable)):
        asyncio.run(_call("asr", factory))
    assert calls["n"] == 1
