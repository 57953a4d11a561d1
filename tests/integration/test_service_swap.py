"""Hot swap in the embedded default, against a real server started with
``speechloop serve``: the service follows the production alias without failing a
request, re-enrols voiceprints for the new speaker version, and refuses a tampered or
unloadable version while the old one keeps serving.

The tests run in order on one server (module scope): swap under load, then a tampered
version, then one whose graph does not load. New versions are the seed's files
republished under new names (with their ONNX graphs), so no export is needed.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_service_support import Server, start_server

CLIP = "zh_mid_5s.wav"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realaudio: Path) -> Iterator[Server]:
    """The gateway, started through ``speechloop serve``."""
    srv = start_server(tmp_path_factory, "svc-swap", via_cli=True)
    yield srv
    srv.stop()


def _republish(server: Server, kind: str, note: str, *, break_graph: bool = False) -> str:
    """Publish the current production files of ``kind`` as a new version."""
    ctx = server.context()
    alias = ctx.registry.get_alias(kind, "production")
    assert alias is not None
    src = ctx.resolve_model(kind, alias.version).directory
    staged = server.root / f"staged-{kind}-{note}"
    shutil.copytree(src, staged)
    if break_graph:
        (staged / "onnx" / "model.onnx").write_bytes(b"this is not an onnx graph")
    info = ctx.registry.publish(
        kind, staged, metrics={"note": note}, lineage={"parent": alias.version, "note": note}
    )
    return info.version


@dataclass
class Load:
    """Requests sent in background threads while the alias moves."""

    server: Server
    audio: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[str, int, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, route: str, files: list[tuple[str, Any]], data: dict[str, str]) -> None:
        with self.server.client() as c:
            while not self.stop.is_set():
                resp = c.post(route, files=files, data=data)
                version = resp.json().get("model", {}).get("version") if resp.is_success else None
                with self.lock:
                    self.results.append((route, resp.status_code, version))


def test_swap_under_load_drops_no_request(server: Server, realaudio: Path) -> None:
    """While both aliases move to new versions under continuous transcribe and verify
    traffic, every request succeeds, each route moves from the old to the new version
    once, voiceprints are re-enrolled for the new speaker version, and /readyz stays up."""
    audio = (realaudio / CLIP).read_bytes()
    before = server.models()
    with server.client() as c:
        enrolled = c.post(
            "/v1/speaker/enroll", data={"speaker_id": "carol"}, files={"audio": (CLIP, audio)}
        )
        assert enrolled.status_code == 200, enrolled.text
    new = {kind: _republish(server, kind, "v2") for kind in ("asr", "spk")}
    load = Load(server, audio)
    jobs = [
        ("/v1/asr/transcribe", [("audio", (CLIP, audio))], {}),
        ("/v1/speaker/verify", [("audio", (CLIP, audio))], {"speaker_id": "carol"}),
    ]
    threads = [threading.Thread(target=load.run, args=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    try:
        server.wait_until(
            lambda: {r[0] for r in load.results} == {j[0] for j in jobs}, 60, "traffic before"
        )
        ctx = server.context()
        for kind, version in new.items():
            ctx.registry.promote(kind, version, reason="hot swap test")

        def swapped() -> bool:
            models = server.models()
            return all(models[k]["version"] == v for k, v in new.items())

        server.wait_until(swapped, 90, "both models swapped")
        with server.client() as c:
            assert c.get("/readyz").status_code == 200

        def served_by_new() -> bool:
            with load.lock:
                done = list(load.results)
            return all(
                sum(1 for r, _, v in done if r == route and v in new.values()) >= 3
                for route, _, _ in jobs
            )

        server.wait_until(served_by_new, 90, "traffic after the swap")
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=60)
    failures = [r for r in load.results if r[1] != 200]
    assert not failures, failures[:5]
    for route, _ in ((j[0], None) for j in jobs):
        versions = [v for r, _, v in load.results if r == route]
        kind = "asr" if "asr" in route else "spk"
        old = before[kind]["version"]
        assert versions[0] == old and versions[-1] == new[kind], (route, set(versions))
        first_new = versions.index(new[kind])
        assert all(v == new[kind] for v in versions[first_new:]), "never back to the old one"
    assert "carol" in server.context().voiceprints.speakers(new["spk"])
    after = server.models()
    assert after["asr"]["swaps"] == 1 and after["spk"]["swaps"] == 1


def test_tampered_version_is_refused_and_the_old_one_serves(
    server: Server, realaudio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version whose stored bytes no longer match their checksums (corrupted after the
    promotion's check, simulated by skipping that check) is refused and logged; the
    served version keeps answering."""
    serving = server.models()["asr"]["version"]
    bad = _republish(server, "asr", "tampered")
    graph = server.root / "store" / "speech-models" / "asr" / "versions" / bad / "files"
    target = graph / "onnx" / "model_eb.onnx"  # a graph of every ASR export layout
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    registry = server.context().registry
    monkeypatch.setattr(registry, "verify", lambda kind, version: None)
    registry.promote("asr", bad, reason="tampered after the check (test)")

    refused = server.wait_until(
        lambda: server.models()["asr"]["refused"].get(bad), 60, "the tampered version refused"
    )
    assert "Integrity" in refused or "sha256" in refused or "corrupt" in refused, refused
    assert server.models()["asr"]["version"] == serving
    with server.client() as c:
        resp = c.post(
            "/v1/asr/transcribe", files={"audio": (CLIP, (realaudio / CLIP).read_bytes())}
        )
        assert c.get("/readyz").status_code == 200
    assert resp.status_code == 200 and resp.json()["model"]["version"] == serving
    assert f"refused asr version {bad}" in server.log()


def test_unloadable_version_is_refused_and_the_old_one_serves(
    server: Server, realaudio: Path
) -> None:
    """A verified version whose ONNX graph cannot load is refused; the old one serves."""
    serving = server.models()["spk"]["version"]
    bad = _republish(server, "spk", "broken", break_graph=True)
    server.context().registry.promote("spk", bad, reason="broken graph (test)")
    server.wait_until(
        lambda: server.models()["spk"]["refused"].get(bad), 60, "the broken version refused"
    )
    with server.client() as c:
        resp = c.post("/v1/speaker/embed", files={"audio": (CLIP, (realaudio / CLIP).read_bytes())})
    assert resp.status_code == 200 and resp.json()["model"]["version"] == serving
