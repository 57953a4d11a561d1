"""``make demo``: the whole loop on the embedded default, one step at a time.

    .venv/bin/python scripts/demo.py          # run the story (or resume / reuse it)
    .venv/bin/python scripts/demo.py status   # what runs, where
    .venv/bin/python scripts/demo.py stop     # stop the service and the Prefect server

The story: a synthetic corpus in a local-directory store; the shipped seeds registered
as first versions; the service (``speechloop serve``) answering; new labelled batches
(new speakers, new names); ``retrain-asr`` and ``retrain-spk`` run through a local
Prefect server; the gate's decisions; the service following the promoted versions
without a restart; a mislabelled batch whose candidate is rejected; a rollback the
service follows; the data ledger.

This driver only sequences and prints: the data steps and the service calls are
:mod:`speechloop.demo`, retraining and rollback are the project's Prefect flows over
the core use-cases. ``tests/e2e/test_loop_e2e.py`` runs the same :class:`Story` steps on
a smaller corpus. Everything lives under ``.speechloop/demo/`` (``DEMO_ROOT``); a second
run reuses what the first made and says so (``make clean`` starts over).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # flows/ lives in the checkout, next to speechloop/
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.markdown import Markdown  # noqa: E402
from rich.table import Table  # noqa: E402

from speechloop.demo.client import (  # noqa: E402
    AsrAnswer,
    AsrAnswers,
    ServiceClient,
    SpkAnswers,
    Verification,
    ask_asr,
    ask_spk,
    enrol_speakers,
)
from speechloop.demo.journal import Journal  # noqa: E402
from speechloop.demo.processes import (  # noqa: E402
    Background,
    port_free,
    prefect_command,
    service_command,
)
from speechloop.demo.story import (  # noqa: E402
    FAULTY,
    AsrProbe,
    SpkProbe,
    StorySizes,
    asr_probes,
    drop_faulty_batches,
    drop_mislabelled_batch,
    drop_new_batches,
    generate_base,
    ledger_lines,
    ledger_problems,
    spk_probes,
)

ASR_PROBES = 60  # at most: the golden clips with names
SPK_SPEAKERS = 4


@dataclass(frozen=True)
class Paths:
    """Everything the story keeps, under one root."""

    root: Path

    @property
    def store(self) -> Path:
        """The local-directory object store (one folder per bucket)."""
        return self.root / "store"

    @property
    def work(self) -> Path:
        """The driver's (and the flows') work directory."""
        return self.root / "work"

    @property
    def service_work(self) -> Path:
        """The service's own work directory (model copies it fetched)."""
        return self.root / "service-work"

    @property
    def prefect_home(self) -> Path:
        """The local Prefect server's home (its SQLite database)."""
        return self.root / "prefect"

    @property
    def reports(self) -> Path:
        """The gate's decision tables as markdown files."""
        return self.root / "reports"

    @property
    def logs(self) -> Path:
        """Logs of the background servers."""
        return self.root / "logs"

    @property
    def api_keys(self) -> Path:
        """The service's API key file (one key, made on the first run)."""
        return self.root / "api-keys"

    @property
    def journal(self) -> Path:
        """What earlier runs finished."""
        return self.root / "journal.json"


def api_key(paths: Paths) -> str:
    """The demo's API key (made once, kept in the key file the service reads)."""
    if paths.api_keys.is_file():
        for line in paths.api_keys.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
    key = "demo-" + secrets.token_urlsafe(18)
    paths.api_keys.parent.mkdir(parents=True, exist_ok=True)
    paths.api_keys.write_text(f"# API key of the demo service (speechloop serve)\n{key}\n")
    paths.api_keys.chmod(0o600)
    return key


def core_env(paths: Paths) -> dict[str, str]:
    """The settings both the driver and the service use (embedded default)."""
    return {
        "SPEECHLOOP_STORE": f"file://{paths.store}",
        "SPEECHLOOP_DEPLOYER": "embedded",
    }


class Show:
    """Where the story prints (a rich console; the e2e test passes a quiet one)."""

    def __init__(self, console: Console | None = None) -> None:
        # piped into a file or a pager: wide enough for the tables (a terminal sets its own)
        self.console = console or Console(
            highlight=False, width=None if sys.stdout.isatty() else 150
        )
        self.started = time.monotonic()
        self._number = 0

    def step(self, title: str) -> None:
        """A numbered step heading with the elapsed time."""
        self._number += 1
        elapsed = time.monotonic() - self.started
        self.console.rule(f"[bold]{self._number}. {title}[/]  [dim]{_clock(elapsed)}[/]")

    def say(self, text: str) -> None:
        """One line."""
        self.console.print(text)

    def reused(self, what: str) -> None:
        """Something an earlier run made, reused."""
        self.console.print(f"[yellow]reused[/] {what}")

    def markdown(self, text: str) -> None:
        """A markdown block (the gate's tables)."""
        self.console.print(Markdown(text))

    def table(self, table: Table) -> None:
        """A table."""
        self.console.print(table)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class Story:
    """The loop's steps, each returning what it did (see the module docstring)."""

    def __init__(
        self,
        paths: Paths,
        sizes: StorySizes,
        show: Show,
        *,
        port: int = 3000,
        prefect_port: int = 4200,
    ) -> None:
        self.paths = paths
        self.sizes = sizes
        self.show = show
        self.port = port
        self.prefect_port = prefect_port
        self.journal = Journal(paths.journal)
        self.key = api_key(paths)
        logs, root = paths.logs, paths.root
        self.service = Background(
            "the service", f"http://127.0.0.1:{port}", "/readyz",
            logs / "service.log", root / "service.pid",
        )  # fmt: skip
        self.prefect = Background(
            "the Prefect server", f"http://127.0.0.1:{prefect_port}", "/api/health",
            logs / "prefect.log", root / "prefect.pid",
        )  # fmt: skip
        self._configure_process()
        from speechloop.config import get_settings
        from speechloop.context import build_context

        get_settings.cache_clear()
        self.ctx = build_context()
        self.client = ServiceClient(self.service.url, self.key)
        self._launched: set[str] = set()
        self._asr_probes: list[AsrProbe] | None = None
        self._spk_probes: list[SpkProbe] | None = None

    # -- environment ----------------------------------------------------------------------

    def _configure_process(self) -> None:
        """Point this process (core settings, the flows, Prefect's client) at the story."""
        os.environ.update(core_env(self.paths))
        os.environ["SPEECHLOOP_WORK_DIR"] = str(self.paths.work)
        os.environ.pop("SPEECHLOOP_ASR_VERSION", None)
        os.environ.pop("SPEECHLOOP_SPK_VERSION", None)
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ["PREFECT_API_URL"] = f"{self.prefect.url}/api"
        os.environ["PREFECT_UI_URL"] = self.prefect.url
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")  # step and epoch lines: progress
        os.environ.setdefault("PREFECT_HOME", str(self.paths.prefect_home))

    def service_env(self) -> dict[str, str]:
        """The service's environment: the story's store, its own work dir, the key file,
        a one-second alias watch (so swaps show quickly)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHLOOP_", "PREFECT_"))}
        env.update(core_env(self.paths))
        env.update(
            SPEECHLOOP_WORK_DIR=str(self.paths.service_work),
            SPEECHLOOP_API_KEYS_FILE=str(self.paths.api_keys),
            SPEECHLOOP_WATCH_INTERVAL_S="1",
            SPEECHLOOP_THREADS="1",
            BENTOML_HOME=str(self.paths.root / "bentoml"),
            BENTOML_DO_NOT_TRACK="true",
        )
        return env

    def prefect_env(self) -> dict[str, str]:
        """The Prefect server's environment (its own home and database)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHLOOP_", "PREFECT_"))}
        env.update(
            PREFECT_HOME=str(self.paths.prefect_home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_API_URL=f"{self.prefect.url}/api",
        )
        return env

    # -- 1-2: corpus and seeds ----------------------------------------------------------

    def corpus(self) -> dict[str, Any]:
        """Generate the golden sets and the old batches (skipped when already there)."""
        report = generate_base(self.ctx, self.sizes)
        return _corpus_dict(report)

    def seeds(self) -> list[dict[str, Any]]:
        """Register the shipped seeds as first versions (reused when already there)."""
        from speechloop.publishing import publish_seed

        with _quiet_export():
            return [publish_seed(self.ctx, kind).to_dict() for kind in ("asr", "spk")]

    # -- 3: background servers ----------------------------------------------------------

    def start_service(self) -> tuple[bool, float]:
        """Start ``speechloop serve`` (or reuse the running one) and wait for ``/readyz``;
        (started by this story, seconds waited)."""
        return self._start(self.service, service_command(self.port), self.service_env(), 300)

    def start_prefect(self, *, wait: bool = True) -> tuple[bool, float]:
        """Start a local Prefect server (or reuse the running one); with ``wait``, wait
        until it answers. (started by this story, seconds waited)."""
        self.paths.prefect_home.mkdir(parents=True, exist_ok=True)
        cmd, env = prefect_command(self.prefect_port), self.prefect_env()
        return self._start(self.prefect, cmd, env, 300 if wait else 0)

    def _start(
        self, server: Background, cmd: list[str], env: dict[str, str], timeout_s: float
    ) -> tuple[bool, float]:
        """Launch ``server`` unless it runs (or is starting); then wait up to ``timeout_s``."""
        if server.pid() is None:
            port = int(server.url.rsplit(":", 1)[1])
            if not port_free(port):
                from speechloop.errors import Conflict

                raise Conflict(
                    f"port {port} is taken by another program: stop it, or pick another "
                    "port (DEMO_PORT / DEMO_PREFECT_PORT)"
                )
            server.start(cmd, env, ROOT)
            self._launched.add(server.name)
        if timeout_s <= 0:
            return server.name in self._launched, 0.0
        return server.name in self._launched, server.wait_healthy(timeout_s)

    def prefect_limits(self) -> list[str]:
        """Create the flows' global concurrency limits (one GPU job, one retraining per
        kind at a time), as prefect.yaml's header asks; the names."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.settings import get_flow_settings

        settings = get_flow_settings()
        names = [
            settings.gpu_limit,
            *(f"{settings.retrain_limit_prefix}{k}" for k in ("asr", "spk")),
        ]
        with (
            temporary_settings({PREFECT_API_URL: f"{self.prefect.url}/api"}),
            get_client(sync_client=True) as client,
        ):
            for name in names:
                client.upsert_global_concurrency_limit_by_name(name, 1)
        return names

    def stop(self) -> list[str]:
        """Stop the background servers this story started; the ones stopped."""
        return [s.name for s in (self.service, self.prefect) if s.stop()]

    # -- 4: the service's answers -------------------------------------------------------

    def asr_probes(self) -> list[AsrProbe]:
        """The ASR probes (golden clips with held-out names), read once."""
        if self._asr_probes is None:
            self._asr_probes = asr_probes(self.ctx, ASR_PROBES)
        return self._asr_probes

    def spk_probes(self) -> list[SpkProbe]:
        """The speaker probes (golden clips of new speakers), read once."""
        if self._spk_probes is None:
            self._spk_probes = spk_probes(self.ctx, SPK_SPEAKERS)
        return self._spk_probes

    def enrol(self) -> list[str]:
        """Enrol the new speakers through the service (once: enrolment audio is kept)."""
        done = self.journal.done("enrol")
        if done is not None:
            return list(done["speakers"])
        speakers = enrol_speakers(self.client, self.spk_probes())
        self.journal.record("enrol", {"speakers": speakers})
        return speakers

    def ask(self) -> tuple[AsrAnswers, SpkAnswers]:
        """Transcribe the ASR probes and verify / identify the speaker probes now."""
        return ask_asr(self.client, self.asr_probes()), ask_spk(self.client, self.spk_probes())

    def before(self) -> tuple[AsrAnswers, SpkAnswers, bool]:
        """The seeds' answers: asked now on the first run, else the recorded ones."""
        done = self.journal.done("before")
        if done is not None:
            return _asr_from(done["asr"]), _spk_from(done["spk"]), True
        asr, spk = self.ask()
        self.journal.record("before", {"asr": asdict(asr), "spk": asdict(spk)})
        return asr, spk, False

    def promoted_answers(self, kind: str) -> AsrAnswers | SpkAnswers | None:
        """The answers an earlier run recorded right after promoting ``kind``, if any."""
        done = self.journal.done(f"after-{kind}")
        if done is None:
            return None
        return _asr_from(done["answers"]) if kind == "asr" else _spk_from(done["answers"])

    def record_promoted(self, kind: str) -> AsrAnswers | SpkAnswers:
        """Ask the service now (it serves the promoted version) and record the answers."""
        asr, spk = self.ask()
        answers: AsrAnswers | SpkAnswers = asr if kind == "asr" else spk
        self.journal.record(f"after-{kind}", {"answers": asdict(answers)})
        return answers

    # -- 5-8: batches, flows, swaps, rollback -------------------------------------------

    def drop_new(self) -> dict[str, Any]:
        """New labelled batches (new speakers saying new names) and one batch per kind
        with bad rows (ingestion quarantines them, with their reasons)."""
        report = _corpus_dict(drop_new_batches(self.ctx, self.sizes))
        report["faulty"] = drop_faulty_batches(self.ctx)
        return report

    def drop_mislabelled(self) -> dict[str, Any]:
        """One ASR batch whose transcripts belong to other clips."""
        done = self.journal.done("mislabelled")
        if done is not None:
            report = dict(done["report"])
            return {**report, "skipped": report["asr_batches"], "asr_batches": []}
        report = _corpus_dict(drop_mislabelled_batch(self.ctx, self.sizes))
        self.journal.record("mislabelled", {"report": report})
        return report

    def retrain(self, kind: str, step: str, epochs: int) -> tuple[dict[str, Any], bool]:
        """Run the ``retrain-<kind>`` flow through the Prefect server (once per ``step``);
        (its result, whether an earlier run's result was reused)."""
        done = self.journal.done(step)
        if done is not None:
            return dict(done["result"]), True
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.retrain import retrain_asr, retrain_spk
        from speechloop.loop.config import RetrainOptions

        flow = retrain_asr if kind == "asr" else retrain_spk
        options = RetrainOptions(
            small=True, epochs=epochs, reason=f"demo: {step}",
            confidence=self.sizes.gate_confidence, margin=self.sizes.gate_margin,
        )  # fmt: skip
        with temporary_settings({PREFECT_API_URL: f"{self.prefect.url}/api"}), _quiet_export():
            result: dict[str, Any] = flow(options=options)
        self.write_report(result)
        self.journal.record(step, {"result": result})
        return result, False

    def write_report(self, result: dict[str, Any]) -> Path | None:
        """The gate's decision table as ``reports/<kind>-<candidate>.md``."""
        if not result.get("decision_markdown"):
            return None
        self.paths.reports.mkdir(parents=True, exist_ok=True)
        path = self.paths.reports / f"{result['kind']}-{result['candidate']}.md"
        path.write_text(result["decision_markdown"])
        return path

    def rollback(self, kind: str) -> tuple[dict[str, Any], bool]:
        """Roll ``kind`` back through the ``rollback`` flow (once); (result, reused)."""
        step = f"rollback-{kind}"
        done = self.journal.done(step)
        if done is not None:
            return dict(done["result"]), True
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.rollback import rollback

        kind_: Any = kind
        reason = "demo: operator rolls the speaker model back"
        with temporary_settings({PREFECT_API_URL: f"{self.prefect.url}/api"}):
            result: dict[str, Any] = rollback(kind=kind_, reason=reason)
        self.journal.record(step, {"result": result})
        return result, False

    def production(self, kind: str) -> str | None:
        """The registry's production version of ``kind``."""
        alias = self.ctx.registry.get_alias(kind, "production")
        return alias.version if alias else None

    def wait_served(self, kind: str) -> tuple[str, float]:
        """Wait until the service serves ``kind``'s production version; (version, seconds)."""
        version = self.production(kind)
        assert version is not None, f"no {kind} production version"
        return version, self.client.wait_for(kind, version)


def _corpus_dict(report: Any) -> dict[str, Any]:
    return {
        "asr_batches": list(report.asr_batches), "spk_batches": list(report.spk_batches),
        "eval_sets": list(report.eval_sets), "skipped": list(report.skipped),
        "utterances": report.utterances, "seconds": round(report.seconds, 1),
    }  # fmt: skip


def _asr_from(data: dict[str, Any]) -> AsrAnswers:
    answers = tuple(
        AsrAnswer(**{**a, "hotwords": tuple(a["hotwords"]), "found": tuple(a["found"])})
        for a in data["answers"]
    )
    return AsrAnswers(data["version"], answers)


def _spk_from(data: dict[str, Any]) -> SpkAnswers:
    checks = tuple(Verification(**v) for v in data["verifications"])
    identified = tuple((t, a) for t, a in data["identified"])
    return SpkAnswers(data["version"], checks, identified)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the ONNX exporter's and quantizer's warnings (they are not the story)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            root.setLevel(level)


# -- printing -----------------------------------------------------------------------------


def asr_table(title: str, runs: list[AsrAnswers], limit: int = 12) -> Table:
    """The probes whose answer with hotwords differs between the versions (up to
    ``limit``, names the second version gained first, then names it lost; all probes if
    none differs), and totals over every probe."""
    table = Table(title=title, show_lines=False, title_justify="left")
    table.add_column("clip")
    table.add_column("hotwords")
    for run in runs:
        table.add_column(f"{run.version}")
    rows = range(len(runs[0].answers))
    changed = [i for i in rows if len({r.answers[i].text for r in runs}) > 1]
    # names gained by the second version first, then names lost, then other changes
    changed.sort(
        key=lambda i: runs[0].answers[i].recognised - runs[1 % len(runs)].answers[i].recognised
    )
    for i in (changed or list(rows))[:limit]:
        first = runs[0].answers[i]
        cells = [first.probe.removeprefix("eval-asr-golden-"), ", ".join(first.hotwords)]
        for run in runs:
            answer = run.answers[i]
            mark = "[green]✓[/]" if answer.recognised == len(answer.hotwords) else "[red]✗[/]"
            cells.append(f"{mark} {answer.text}")
        table.add_row(*cells)
    if len(changed) > limit:
        table.add_row("…", f"{len(changed) - limit} more changed", *[""] * len(runs))
    totals = [f"all {len(rows)}", f"{len(changed)} answers changed"]
    totals += [
        f"names recognised {r.recognised}/{r.names} (without hotwords {r.recognised_plain}); "
        f"CER {r.cer():.1%} (without hotwords {r.cer(hotwords=False):.1%})"
        for r in runs
    ]
    table.add_row(*totals, style="bold")
    return table


def spk_table(title: str, runs: list[SpkAnswers]) -> Table:
    """One row per verification: score and verdict per version; identification totals."""
    table = Table(title=title, title_justify="left")
    table.add_column("pair")
    table.add_column("truth")
    for run in runs:
        table.add_column(f"{run.version}")
    for i, first in enumerate(runs[0].verifications):
        pair = first.pair.replace("espeak_", "").replace("flite_", "")
        cells = [pair, "same" if first.same else "different"]
        for run in runs:
            v = run.verifications[i]
            verdict = "same" if v.accepted else "different"
            mark = "[green]✓[/]" if v.right else "[red]✗[/]"
            cells.append(f"{mark} {v.score:+.3f} (≥{v.threshold:.3f}? {verdict})")
        table.add_row(*cells)
    verified = [f"{r.verify_right}/{len(r.verifications)}" for r in runs]
    identified = [f"{r.identify_right}/{len(r.identified)}" for r in runs]
    table.add_row("verify right", "", *verified, style="bold")
    table.add_row("identified right", "", *identified, style="bold")
    return table


def show_result(show: Show, result: dict[str, Any], reused: bool, when: str) -> None:
    """A retraining's outcome and the gate's table."""
    if reused:
        show.reused(f"this run finished at {when}; its result is shown again")
    colour = {"promoted": "green", "rejected": "red"}.get(result["status"], "yellow")
    show.say(f"[bold {colour}]{result['status']}[/]: {result['message']}")
    show.say(
        f"batches {', '.join(result['batches']) or '-'} ({result['quarantined']} rows "
        f"quarantined); parent {result['parent']}; step seconds "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["timings"].items())
    )
    if result.get("decision_markdown"):
        show.markdown(result["decision_markdown"])


def say_not_promoted(show: Show, kind: str, result: dict[str, Any], served: str | None) -> None:
    """Why a candidate was not promoted, by check, in plain words; production unchanged."""
    checks = (result.get("decision") or {}).get("checks", [])
    failed = [c["name"] for c in checks if not c["passed"]]
    if failed:
        show.say(f"[yellow]{kind} candidate {result['candidate']} not promoted: failed "
                 f"{', '.join(failed)}[/]")  # fmt: skip
    if any(name.startswith("unseen_") for name in failed):
        show.say("[yellow]the candidate got worse on voices no training batch contains "
                 "(spk/eval/unseen): better on the voices it trained on, worse for every "
                 "future user -- the open-set guard keeps it out[/]")  # fmt: skip
    show.say(f"[yellow]{kind} production unchanged: the service keeps serving {served}[/]")


# -- the run ------------------------------------------------------------------------------


def run(story: Story) -> int:
    """The whole story, printed."""
    show = story.show
    show.step("Setup")
    if shutil.which("espeak-ng") is None:
        show.say("[red]espeak-ng is missing: run `make setup` (it installs it with apt)[/]")
        return 1
    show.say(f"store {story.paths.store}  (SPEECHLOOP_STORE=file://…, the embedded default)")
    if not story.journal.empty:
        show.reused(f"the demo under {story.paths.root}: finished steps are not repeated "
                    "(`make clean` starts over)")  # fmt: skip

    show.step("Generate the synthetic corpus: golden sets and an old batch per kind")
    corpus = story.corpus()
    _say_corpus(show, corpus)

    show.step("Register the shipped seeds as the first versions")
    for seed in story.seeds():
        what = "published" if seed["published"] else "[yellow]reused[/] (already published)"
        prod = ", production" if seed["promoted"] else ""
        show.say(f"{seed['kind']}: version {seed['version']} {what}{prod}")

    show.step("Start the service (speechloop serve) and wait for /readyz")
    story.start_prefect(wait=False)  # starts meanwhile; the flows need it at step 8
    with show.console.status("loading both models…"):
        started, seconds = story.start_service()
    if started:
        show.say(f"serving on {story.service.url} after {seconds:.0f} s")
    else:
        show.reused(f"the service already running on {story.service.url}")
    show.say(f"serving: {story.client.served()}")

    show.step("Call it: transcribe with and without hotwords, enrol, verify, identify")
    story.enrol()
    asr0, spk0, recorded = story.before()
    if recorded:
        show.reused(f"the seeds' answers recorded at {story.journal.when('before')}")
    _say_one_clip(show, asr0)
    show.table(spk_table(f"speaker answers of {spk0.version}", [spk0]))

    show.step("Start a local Prefect server (the flows' orchestrator)")
    with show.console.status("starting prefect server…"):
        started, seconds = story.start_prefect()
    if started:
        show.say(f"Prefect UI on {story.prefect.url} (waited {seconds:.0f} s more for it)")
    else:
        show.reused(f"the Prefect server already running on {story.prefect.url}")
    show.say(f"concurrency limits (1 slot each): {', '.join(story.prefect_limits())}")

    show.step("Drop new labelled batches: new speakers, new names (and some bad rows)")
    dropped = story.drop_new()
    _say_corpus(show, dropped)
    if dropped["faulty"]:
        show.say(f"and batch {FAULTY} ({', '.join(dropped['faulty'])}): a few good rows, one "
                 "corrupt file, one too short, an empty transcript, a path escaping the "
                 "batch, a row without a speaker")  # fmt: skip

    sizes = story.sizes
    after: dict[str, Any] = {}
    for kind, epochs in (("asr", sizes.asr_epochs), ("spk", sizes.spk_epochs)):
        show.step(f"retrain-{kind} through Prefect: fine-tune, score, gate, publish, deploy")
        result, reused = story.retrain(kind, f"retrain-{kind}", epochs)
        show_result(show, result, reused, story.journal.when(f"retrain-{kind}"))
        if result["status"] != "promoted":
            say_not_promoted(show, kind, result, story.client.served()[kind])
            continue
        show.step(f"The service follows {kind} production without a restart")
        promoted = story.promoted_answers(kind)
        if promoted is None:
            version, seconds = story.wait_served(kind)
            show.say(f"{kind} now served: {version} (seen {seconds:.1f} s after asking)")
            promoted = story.record_promoted(kind)
        else:
            show.reused(f"the promoted version's answers recorded at "
                        f"{story.journal.when(f'after-{kind}')}")  # fmt: skip
        after[kind] = promoted
        if isinstance(promoted, AsrAnswers):
            show.table(asr_table("ASR answers with hotwords, before → now", [asr0, promoted]))
        else:
            show.table(spk_table("speaker answers, before → now", [spk0, promoted]))

    show.step("Drop a mislabelled batch (transcripts shifted to the next clip) and retrain")
    _say_corpus(show, story.drop_mislabelled())
    with show.console.status("retrain-asr on the mislabelled batch…"):
        result, reused = story.retrain("asr", "retrain-asr-mislabelled", sizes.bad_epochs)
    show_result(show, result, reused, story.journal.when("retrain-asr-mislabelled"))
    served = story.client.served()
    show.say(f"the service still serves asr {served['asr']} (candidate {result['candidate']} "
             "never served)")  # fmt: skip

    rollback_story(story, asr0, spk0, after)

    show.step("The data ledger: every batch consumed once, every row accounted for")
    lines = ledger_lines(story.ctx)
    _say_ledger(show, lines)
    problems = ledger_problems(lines)
    for problem in problems:
        show.say(f"[red]{problem}[/]")

    where(story)
    return 1 if problems else 0


def rollback_story(story: Story, asr0: AsrAnswers, spk0: SpkAnswers, after: dict[str, Any]) -> None:
    """Roll back the speaker model (or, if only ASR was promoted, the ASR model) and show
    the service follow with the answers it gave before."""
    show = story.show
    if not after:
        show.step("Roll a model back")
        show.say("[yellow]nothing was promoted, so there is nothing to roll back[/]")
        return
    kind = "spk" if "spk" in after else "asr"
    show.step(f"Roll the {kind} model back; the service follows")
    rolled, reused = story.rollback(kind)
    if reused:
        show.reused(f"the rollback of {story.journal.when(f'rollback-{kind}')}")
    show.say(f"{kind} production {rolled['previous']} → {rolled['version']}; voiceprints "
             f"re-enrolled: {', '.join(rolled['reenrolled']) or '-'}")  # fmt: skip
    version, seconds = story.wait_served(kind)
    show.say(f"{kind} now served: {version} (seen {seconds:.1f} s after asking)")
    asr2, spk2 = story.ask()
    if kind == "spk":
        runs = [spk0, *([after["spk"]] if "spk" in after else []), spk2]
        show.table(spk_table("speaker answers: seed, promoted, after the rollback", runs))
    else:
        runs_asr = [asr0, *([after["asr"]] if "asr" in after else []), asr2]
        show.table(asr_table("ASR answers: seed, promoted, after the rollback", runs_asr))


def _say_corpus(show: Show, corpus: dict[str, Any]) -> None:
    made = [*corpus["eval_sets"], *[f"asr/{b}" for b in corpus["asr_batches"]],
            *[f"spk/{b}" for b in corpus["spk_batches"]]]  # fmt: skip
    if made:
        show.say(f"wrote {', '.join(made)}: {corpus['utterances']} utterances in "
                 f"{corpus['seconds']:.0f} s")  # fmt: skip
    if corpus["skipped"]:
        show.reused(f"already in the store: {', '.join(corpus['skipped'])}")


def _say_one_clip(show: Show, answers: AsrAnswers) -> None:
    """One clip with and without its hotwords: the first where the hotwords make the
    difference (the totals line below counts every clip)."""
    helped = [a for a in answers.answers if a.found and not any(h in a.plain_text for h in a.found)]
    first = (helped or list(answers.answers))[0]
    show.say(f"clip {first.probe}: said [italic]{first.expected}[/]")
    show.say(f"  without hotwords ({answers.version}): {first.plain_text}")
    show.say(f"  with hotwords {list(first.hotwords)}: {first.text}  "
             f"(found {list(first.found)})")  # fmt: skip
    show.say(
        f"over {len(answers.answers)} golden clips (new voices, new names) the seed recognises "
        f"{answers.recognised}/{answers.names} names with their hotwords, "
        f"{answers.recognised_plain} without; CER {answers.cer():.1%} with hotwords, "
        f"{answers.cer(hotwords=False):.1%} without"
    )


def _say_ledger(show: Show, lines: list[Any]) -> None:
    table = Table(title="ledger", title_justify="left")
    for column in ("kind", "batch", "state", "committed by", "rows", "good", "quarantined"):
        table.add_column(column)
    for line in lines:
        table.add_row(line.kind, line.batch_id, line.state, line.committed_by or "-",
                      *(str(x) if x is not None else "-"
                        for x in (line.rows_in, line.good, line.quarantined)))  # fmt: skip
    show.table(table)


def where(story: Story) -> None:
    """Where everything is, and how to stop it."""
    show = story.show
    show.step("Where things are")
    url, key_file = story.service.url, story.paths.api_keys
    rows = [
        ("service", f"{url}  (API docs {url}/docs, models {url}/v1/models)"),
        ("try it in a browser", f"{url}/ui  (API key: the last line of {key_file})"),
        ("Prefect UI", f"{story.prefect.url}  (flow runs, the gate's tables as artifacts)"),
        ("gate reports", f"{story.paths.reports}/*.md"),
        ("registry", "speechloop models list; speechloop deploy status  (with the env below)"),
        ("logs", f"{story.paths.logs}/service.log, prefect.log"),
        ("env for the CLI", f"export SPEECHLOOP_STORE=file://{story.paths.store}"),
        ("stop", "bash scripts/demo.sh stop"),
    ]
    table = Table(show_header=False)
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", value)
    show.table(table)
    show.say(f'curl -H "Authorization: Bearer $(tail -1 {key_file})" '
             f"-F audio=@clip.wav -F hotwords=NAME {url}/v1/asr/transcribe")  # fmt: skip
    show.say(f"done in {_clock(time.monotonic() - show.started)}")


def main(argv: list[str]) -> int:
    """``demo.py [run|stop|status]``."""
    command = argv[0] if argv else "run"
    root = Path(os.environ.get("DEMO_ROOT", ROOT / ".speechloop" / "demo"))
    story = Story(Paths(root), StorySizes.demo(), Show(),
                  port=int(os.environ.get("DEMO_PORT", "3000")),
                  prefect_port=int(os.environ.get("DEMO_PREFECT_PORT", "4200")))  # fmt: skip
    if command == "stop":
        stopped = story.stop()
        story.show.say(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if command == "status":
        for server in (story.service, story.prefect):
            state = "running" if server.running() else "stopped"
            story.show.say(f"{server.name}: {state} ({server.url}, log {server.log})")
        return 0
    if command != "run":
        story.show.say(f"unknown command {command!r}: use run, stop or status")
        return 2
    from speechloop.errors import SpeechloopError

    try:
        return run(story)
    except SpeechloopError as exc:
        story.show.say(f"[red]demo stopped: {exc}[/]")
        story.show.say("fix the cause and run `make demo` again: finished steps are reused")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
