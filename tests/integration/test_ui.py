"""The try-it page (``GET /ui``) in a real headless browser against a real service.

One ``bentoml serve`` process for the module (the harness of the service tests,
:mod:`tests.integration.test_service_support`), driven by Debian's ``chromium`` through
playwright (its own browser downloads are not used). The page's answers are compared
with the same requests sent with httpx, so the checks hold whatever the seed model
says about the real (Mandarin) recordings.

Screenshots are kept as test artifacts in ``tests/artifacts/ui/`` (git-ignored):
``transcribe.png`` and ``verify.png``, overwritten by each run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect, sync_playwright

from tests.integration.test_service_support import KEYS, ROOT, Server, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
    "--use-fake-device-for-media-stream",  # a synthetic microphone (a beeping tone)
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
CLIP = "zh_asr_example.wav"
CLIPS = ("zh_asr_example.wav", "zh_mid_5s.wav", "zh_long_8s.wav", "sample_6s.wav")
OTHER = "zh_long_8s.wav"
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} not installed (Debian package 'chromium'; scripts/install-system-deps.sh)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realaudio: Path) -> Iterator[Server]:
    """The gateway on a seeded store, ready."""
    srv = start_server(tmp_path_factory, "svc-ui")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, launched by playwright."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh tab (own sessionStorage) on ``/ui``; fails the test on a page script error."""
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{server.url}/ui")
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def _enter_key(page: Page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#save-key")


def _post(server: Server, path: str, files: list[tuple[str, Any]]) -> dict[str, Any]:
    with server.client() as c:
        resp = c.post(path, files=files)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _audio(realaudio: Path, name: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("audio", (name, (realaudio / name).read_bytes(), "audio/wav"))


def _hotword_case(server: Server, realaudio: Path) -> tuple[str, str, dict[str, Any]]:
    """A clip, a hotword the served model finds in it, and the API's answer for both.

    The seed model is English and synthetic, so the hotword is taken from its own text
    for the clip (any word it finds again with the hotword given).
    """
    for name in CLIPS:
        plain = _post(server, "/v1/asr/transcribe", [_audio(realaudio, name)])
        for word in sorted(set(re.findall(r"[a-z]{3,}", plain["text"].lower())), key=len)[::-1]:
            files = [_audio(realaudio, name), ("hotwords", (None, word))]
            want = _post(server, "/v1/asr/transcribe", files)
            if want["hotwords_found"] == [word]:
                return name, word, want
    pytest.fail("the served model found none of its own words again on any real clip")


def test_page_is_public_and_the_api_is_not(server: Server) -> None:
    """/ui and its files are served without a key and carry no key; /v1 still needs one."""
    with server.client(key=None) as c:
        html = c.get("/ui", follow_redirects=True)
        script = c.get("/ui/app.js")
        models = c.get("/v1/models")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert 'id="transcribe"' in html.text and script.status_code == 200
    assert models.status_code == 401
    for key in KEYS:
        assert key not in html.text and key not in script.text


def test_transcribe_marks_found_hotwords_and_names_the_version(
    page: Page, server: Server, realaudio: Path
) -> None:
    """Key entered, a real recording uploaded and a hotword typed: the page shows the
    API's text with the found hotword marked, and the served ASR version; the served
    models are listed with their metrics; the key lives in sessionStorage only."""
    name, hotword, want = _hotword_case(server, realaudio)
    version = server.models()["asr"]["version"]
    _enter_key(page, KEYS[0])
    expect(page.locator("#models article[data-kind='asr']")).to_contain_text(version)
    spk_card = page.locator("#models article[data-kind='spk']")
    expect(spk_card).to_contain_text("ready")
    eer = server.models()["spk"]["metrics"]["golden"]["eer"]  # the published seed's figures
    expect(spk_card).to_contain_text(f"golden.eer{eer:.4g}")
    page.set_input_files("#asr-file", str(realaudio / name))
    page.fill("#hotwords", hotword)
    page.click("#transcribe")
    expect(page.locator("#asr-result")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "transcribe.png"), full_page=True)
    assert page.inner_text("#asr-text") == want["text"]
    marks = page.locator("#asr-text mark.hotword").all_inner_texts()
    assert marks and {m.lower() for m in marks} == {hotword}
    assert page.inner_text("#asr-found") == hotword
    assert f"asr:{version}" in page.inner_text("#asr-version")
    assert page.locator("#asr-error").is_hidden()
    assert page.evaluate("sessionStorage.getItem('speechloop.apiKey')") == KEYS[0]
    assert page.evaluate("localStorage.length") == 0
    assert (ARTIFACTS / "transcribe.png").stat().st_size > 10_000


def test_verify_two_clips_shows_score_and_decision(
    page: Page, server: Server, realaudio: Path
) -> None:
    """Two clips uploaded: the page shows the API's score, the threshold and the
    decision that follows from them."""
    want = _post(server, "/v1/speaker/verify", [_audio(realaudio, CLIP), _audio(realaudio, OTHER)])
    _enter_key(page, KEYS[1])
    page.set_input_files("#verify-a", str(realaudio / CLIP))
    page.set_input_files("#verify-b", str(realaudio / OTHER))
    page.click("#verify")
    expect(page.locator("#verify-result")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "verify.png"), full_page=True)
    assert float(page.inner_text("#verify-score")) == pytest.approx(want["score"], abs=1e-4)
    assert float(page.inner_text("#verify-threshold")) == pytest.approx(want["threshold"], abs=1e-4)
    decision = page.inner_text("#verify-decision")
    assert decision.startswith("Same speaker" if want["same_speaker"] else "Different speakers")
    spk = server.models()["spk"]["version"]
    assert f"spk:{spk}" in page.inner_text("#verify-version")


def test_errors_are_shown_not_swallowed(page: Page, realaudio: Path) -> None:
    """Without a key the service's 401 is shown with a pointer to the key field (also on
    the models list, loaded when the page opens); with a wrong key the 401 message is
    shown; a non-audio upload shows the service's 4xx message naming the file."""
    expect(page.locator("#models-error")).to_contain_text("HTTP 401")
    page.set_input_files("#asr-file", str(realaudio / CLIP))
    page.click("#transcribe")
    expect(page.locator("#asr-error")).to_contain_text("HTTP 401: Unauthorized: missing API key")
    expect(page.locator("#asr-error")).to_contain_text("enter your API key")
    _enter_key(page, "not-a-key")
    page.click("#transcribe")
    expect(page.locator("#asr-error")).to_contain_text("HTTP 401: Unauthorized: invalid API key")
    _enter_key(page, KEYS[0])
    expect(page.locator("#models-error")).to_be_hidden()
    junk = FilePayload(name="notes.wav", mimeType="audio/wav", buffer=b"not audio")
    page.set_input_files("#asr-file", files=junk)
    page.click("#transcribe")
    expect(page.locator("#asr-error")).to_contain_text(re.compile(r"HTTP 4\d\d: \w+"))
    expect(page.locator("#asr-error")).to_contain_text("notes.wav")


def test_recording_in_the_browser_is_sent_as_wav(page: Page, server: Server) -> None:
    """Record (Chromium's synthetic microphone), stop, transcribe: the page converts the
    recording to 16 kHz WAV, the service accepts it and the served version is shown."""
    _enter_key(page, KEYS[0])
    page.click("#record")
    expect(page.locator("#record")).to_have_text("Stop")
    page.wait_for_timeout(1500)
    page.click("#record")
    expect(page.locator("#record-status")).to_contain_text("Recorded")
    header = page.evaluate(
        "async () => { const f = document.querySelector('#asr-preview').src;"
        " const b = await (await fetch(f)).arrayBuffer();"
        " const v = new DataView(b); return [v.getUint32(24, true), v.getUint16(22, true),"
        " b.byteLength]; }"
    )
    assert header[0] == 16_000 and header[1] == 1 and header[2] > 16_000, header
    page.click("#transcribe")
    expect(page.locator("#asr-result")).to_be_visible()
    version = server.models()["asr"]["version"]
    assert f"asr:{version}" in page.inner_text("#asr-version")
    assert page.locator("#asr-error").is_hidden()
