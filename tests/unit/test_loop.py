"""The retraining use-case's pieces: training set with replay, no new data, the lease, and
failures mid-run (a store wrapper that fails on chosen writes, a failing deployer).

Training and scoring are replaced by the test's step runner (the real ones run in
tests/integration/test_flows.py): "train" copies the shipped speaker seed as the
candidate, "score" returns hand-made per-trial reports where the candidate separates
every golden trial and, on the unseen voices, scores like production (or, when asked,
worse). Ingestion, the gate, publishing (with ONNX export), promotion, the deployer,
re-enrolment and the ledger are the real ones on a local store, which holds a
(manifest-only) unseen-voices set ``spk/eval/unseen``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from speechloop.config import Settings
from speechloop.context import AppContext, seed_dir
from speechloop.data.ledger import Claim, Ledger
from speechloop.data.types import AsrRow, SpkEvalSet, SpkRow, Trial
from speechloop.deploy import DeployOutcome, EmbeddedDeployer
from speechloop.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from speechloop.gating import GateDecision, build_spk_report
from speechloop.loop import ReplayConfig, RetrainConfig, RunHooks, retrain
from speechloop.loop.config import RetrainOptions
from speechloop.loop.lock import acquire, lease_key, release
from speechloop.loop.retrain import RunPlan, Scores
from speechloop.loop.training_set import assemble, earlier_batches, sample_replay
from speechloop.storage.base import ObjectInfo, ObjectStore
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, put_batch

T = TypeVar("T")
MODELS = "speech-models"


# -- training set ---------------------------------------------------------------------


def _rows(batch: str, n: int, split_every: int = 0) -> list[AsrRow]:
    return [
        AsrRow(f"{batch}-{i}", Path(f"{batch}/{i}.wav"), "text", 1.0,
               split="eval" if split_every and i % split_every == 0 else "train", batch_id=batch)
        for i in range(n)
    ]  # fmt: skip


def test_replay_sample_is_capped_deterministic_and_takes_train_rows_only() -> None:
    """At most ``rows`` rows from at most ``batches`` batches, never validation rows; the
    same seed draws the same sample."""
    data = {f"b{i}": _rows(f"b{i}", 10, split_every=5) for i in range(6)}
    loaded: list[str] = []

    def load(batch_id: str) -> list[AsrRow]:
        loaded.append(batch_id)
        return data[batch_id]

    config = ReplayConfig(rows=7, batches=2, seed=3)
    rows, used = sample_replay(sorted(data), load, config)
    assert len(rows) == 7 and len(used) == 2 and sorted(loaded) == sorted(used)
    assert all(r.split == "train" and r.batch_id in used for r in rows)
    again, used_again = sample_replay(sorted(data), data.__getitem__, config)
    assert [r.id for r in again] == [r.id for r in rows] and used_again == used
    assert sample_replay(sorted(data), load, ReplayConfig(rows=0)) == ([], ())


def test_training_set_is_new_rows_then_replay_from_other_batches() -> None:
    """New rows come first; the replay never draws from this run's own batches."""
    new = _rows("n1", 4)
    data = {"n1": new, "old1": _rows("old1", 5), "old2": _rows("old2", 5)}
    ts = assemble(new, ["n1"], ["n1", "old1", "old2"], data.__getitem__,
                  ReplayConfig(rows=6, batches=5))  # fmt: skip
    assert ts.rows[:4] == new and len(ts.replay) == 6
    assert {r.batch_id for r in ts.replay} <= {"old1", "old2"}
    assert ts.summary()["new_batches"] == ["n1"] and "n1" not in ts.replay_batches


def test_earlier_batches_are_the_committed_ones(tmp_path: Path) -> None:
    """Replay candidates: batches an earlier run committed, minus this run's."""
    store = LocalStore(tmp_path / "store", fsync=False)
    for batch_id in ("a", "b", "c"):
        put_batch(store, "spk", batch_id, [{"id": f"{batch_id}1", "audio": "x.wav",
                                             "speaker": "s1"}], {"x.wav": clip()})  # fmt: skip
    ledger = Ledger(store, BUCKET, "spk")
    for batch_id in ("a", "b"):
        sha = store.stat(BUCKET, f"spk/batches/{batch_id}/manifest.jsonl").sha256
        ledger.stage(Claim(batch_id, "r1", sha, 1, 1, 0))
    ledger.commit("r1", ["a", "b"])
    assert earlier_batches(ledger, ["b"]) == ["a"]


def test_options_map_to_the_config() -> None:
    """CLI options and flow parameters give the same config: gate, replay, eval set."""
    options = RetrainOptions(small=True, epochs=3, replay_rows=5, margin=0.01,
                             confidence=0.9, eval_set="seen", reason="nightly")  # fmt: skip
    config = options.to_config()
    assert config.gate is not None and config.gate.asr_min_gain == 0.01
    assert config.gate.spk_min_gain == 0.01 and config.gate.confidence == 0.9
    assert config.replay.rows == 5 and config.eval_set == "seen" and config.reason == "nightly"
    assert config.asr_config().stages[0].epochs == 3 and config.spk_config().epochs == 3
    with pytest.raises(InvalidInput):
        RetrainConfig(min_batches=0)


# -- the lease ------------------------------------------------------------------------


def test_a_second_run_of_a_kind_is_refused_while_the_first_holds_the_lease(
    tmp_path: Path,
) -> None:
    """Two runs of one kind: the second gets Conflict naming the holder; after release
    (or expiry) the next run gets the lease; another kind is independent."""
    store = LocalStore(tmp_path / "store", fsync=False)
    first = acquire(store, MODELS, "asr", "run-1", ttl_s=60)
    with pytest.raises(Conflict, match="run-1"):
        acquire(store, MODELS, "asr", "run-2", ttl_s=60)
    acquire(store, MODELS, "spk", "run-3", ttl_s=60)
    release(store, MODELS, first)
    assert not store.exists(MODELS, lease_key("asr"))
    acquire(store, MODELS, "asr", "run-2", ttl_s=-1)  # already expired
    taken = acquire(store, MODELS, "asr", "run-4", ttl_s=60)
    assert taken.run_id == "run-4"


# -- runs on a local store ------------------------------------------------------------


class FlakyStore(ObjectStore):
    """A store that raises StoreUnavailable on writes whose key ``fail(key)`` selects."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.fail: Callable[[str], bool] = lambda key: False

    def _check(self, key: str) -> None:
        if self.fail(key):
            raise StoreUnavailable(f"injected outage writing {key}")

    def ensure_bucket(self, bucket: str) -> None:
        self.inner.ensure_bucket(bucket)

    def put_bytes(self, bucket: str, key: str, data: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None) -> ObjectInfo:  # fmt: skip
        self._check(key)
        return self.inner.put_bytes(bucket, key, data, if_none_match=if_none_match,
                                    if_match=if_match)  # fmt: skip

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        self._check(key)
        return self.inner.put_file(bucket, key, path)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.inner.get_bytes(bucket, key)

    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        return self.inner.get_file(bucket, key, dest)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        return self.inner.stat(bucket, key)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        return self.inner.list(bucket, prefix, start_after=start_after)

    def delete(self, bucket: str, key: str) -> None:
        self._check(key)
        self.inner.delete(bucket, key)


def _eval_set(n_speakers: int = 6, voice: str = "s") -> SpkEvalSet:
    rows = [SpkRow(f"{voice}{s}u{u}", Path("x.wav"), f"{voice}{s}", 1.0, "eval")
            for s in range(n_speakers) for u in range(2)]  # fmt: skip
    trials = []
    for s in range(n_speakers):
        trials.append(Trial(f"{voice}{s}u0", f"{voice}{s}u1", True))
        trials.append(Trial(f"{voice}{s}u0", f"{voice}{(s + 1) % n_speakers}u1", False))
    return SpkEvalSet(rows, trials)


UNSEEN_VOICES = [f"w{s}" for s in range(6)]


def _put_unseen_set(store: ObjectStore, name: str = "unseen") -> None:
    """A speaker set of voices w0..w5 (manifest and trials; the plan reads no audio)."""
    data = _eval_set(voice="w")
    rows = "".join(f'{{"id": "{r.id}", "audio": "a.wav", "speaker": "{r.speaker}"}}\n'
                   for r in data.rows)  # fmt: skip
    trials = "".join(f"{t.enrol} {t.test} {'target' if t.target else 'nontarget'}\n"
                     for t in data.trials)  # fmt: skip
    store.put_bytes(BUCKET, f"spk/eval/{name}/trials.txt", trials.encode())
    store.put_bytes(BUCKET, f"spk/eval/{name}/manifest.jsonl", rows.encode())


class FakeSteps(RunHooks):
    """Real steps except train (the seed, copied) and score (hand-made reports: better on
    the golden set; on the unseen voices like production, or worse if ``unseen_worse``)."""

    def __init__(self, unseen_worse: bool = False) -> None:
        self.decisions: list[GateDecision] = []
        self.unseen_worse = unseen_worse

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        if name == "train":
            plan: RunPlan = args[0]
            out = plan.run_dir / "candidate"
            shutil.copytree(seed_dir("spk"), out)
            return out  # type: ignore[return-value]
        if name == "score":
            plan = args[1]
            data = _eval_set()
            good = [0.9 if t.target else 0.1 for t in data.trials]
            poor = [0.5 if t.target else 0.6 for t in data.trials]
            assert plan.parent is not None
            candidate = build_spk_report(plan.version, data, good)
            production = build_spk_report(plan.parent.version, data, poor)
            if plan.config.spk_unseen_set is None:
                return Scores("golden", candidate, production)  # type: ignore[return-value]
            voices = _eval_set(voice="w")
            same = [0.7 if t.target else 0.3 for t in voices.trials]
            worse = [0.4 if t.target else 0.5 for t in voices.trials]
            unseen = (
                build_spk_report(plan.version, voices, worse if self.unseen_worse else same),
                build_spk_report(plan.parent.version, voices, same),
            )
            return Scores("golden", candidate, production, "unseen", unseen)  # type: ignore[return-value]
        return fn(*args)

    def decision(self, kind: str, decision: GateDecision) -> dict[str, Any]:
        self.decisions.append(decision)
        return {"artifact_key": f"{kind}-gate-test"}


class BrokenDeployer(EmbeddedDeployer):
    """Moves the alias like the embedded deployer would, then fails (a failed rollout)."""

    def redeploy(self, kind: str, version: str, *, reason: str) -> DeployOutcome:
        raise RuntimeError("rollout of speechloop-spk did not complete in 600 s")


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the speaker seed published (ONNX export once) and in production."""
    from speechloop.publishing import publish_seed

    root = tmp_path_factory.mktemp("seeded")
    settings = Settings(store=f"file://{root / 'store'}", work_dir=root / "work")
    ctx = AppContext(settings, store=LocalStore(root / "store", fsync=False))
    ctx.store.ensure_bucket(BUCKET)
    publish_seed(ctx, "spk")
    _put_unseen_set(ctx.store)
    return root / "store"


@pytest.fixture
def flaky(tmp_path: Path, seeded_store: Path) -> FlakyStore:
    """A copy of the seeded store behind the fault injector."""
    shutil.copytree(seeded_store, tmp_path / "store")
    return FlakyStore(LocalStore(tmp_path / "store", fsync=False))


@pytest.fixture
def ctx(tmp_path: Path, flaky: FlakyStore) -> AppContext:
    """A context on the flaky local store (embedded deployer, torch speaker backend)."""
    settings = Settings(store=f"file://{tmp_path / 'store'}", work_dir=tmp_path / "work",
                        spk_backend="torch", deployer="embedded")  # fmt: skip
    return AppContext(settings, store=flaky)


def _spk_batches(store: ObjectStore, *ids: str) -> None:
    for b, batch_id in enumerate(ids):
        rows = [{"id": f"{batch_id}-{s}-{u}", "audio": f"{s}{u}.wav", "speaker": f"v{s}"}
                for s in range(3) for u in range(2)]  # fmt: skip
        audio = {f"{s}{u}.wav": clip(1.0, freq=150.0 + 40 * s + 7 * u + b) for s in range(3)
                 for u in range(2)}  # fmt: skip
        put_batch(store, "spk", batch_id, rows, audio)


def _states(ctx: AppContext) -> dict[str, str]:
    return {s.batch_id: s.state for s in Ledger(ctx.store, BUCKET, "spk").scan()}


def _production(ctx: AppContext) -> str | None:
    alias = ctx.registry.get_alias("spk", "production")
    return alias.version if alias else None


def _enrol(ctx: AppContext) -> None:
    ctx.voiceprints.enroll(ctx.speaker_embedder(), "alice", [clip(1.5, freq=180.0)])


def _seed_in_production(ctx: AppContext) -> str:
    alias = ctx.registry.get_alias("spk", "production")
    assert alias is not None
    return alias.version


def test_no_new_data_ends_cleanly(ctx: AppContext) -> None:
    """Nothing to ingest: "no new data", no version, no history, no lease left behind."""
    versions = ctx.registry.list_versions("spk")
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert result.status == "no_new_data" and "no complete uncommitted batch" in result.message
    assert result.candidate is None and result.committed == []
    assert ctx.registry.list_versions("spk") == versions
    assert not ctx.store.exists(MODELS, lease_key("spk"))


def test_batches_without_a_good_row_are_consumed_as_no_new_data(ctx: AppContext) -> None:
    """A batch whose every row is quarantined trains nothing; it is reported and consumed."""
    put_batch(ctx.store, "spk", "bad", [{"id": "r1", "audio": "missing.wav", "speaker": "a"}], {})
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert result.status == "no_new_data" and result.quarantined == 1
    assert result.committed == ["bad"] and _states(ctx) == {"bad": "committed"}


def test_a_promotion_runs_every_step_and_commits_last(ctx: AppContext) -> None:
    """Better candidate: published with lineage, promoted with the decision and its link,
    voiceprints rebuilt for it, batches committed by this run."""
    seed = _seed_in_production(ctx)
    _enrol(ctx)
    _spk_batches(ctx.store, "b1", "b2")
    hooks = FakeSteps()
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=hooks, run_id="run-ok")
    assert result.status == "promoted", result.message
    assert _production(ctx) == result.candidate and result.production_before == seed
    record = ctx.registry.history("spk")[-1]
    assert record["action"] == "promote" and record["decision"]["promote"] is True
    assert record["decision"]["links"] == {"artifact_key": "spk-gate-test"}
    lineage = ctx.registry.show("spk", result.candidate or "").lineage
    assert lineage["parent"] == seed and lineage["data_batches"] == ["b1", "b2"]
    assert result.reenrolled == ["alice"]
    assert "alice" in ctx.voiceprints.speakers(result.candidate or "")
    assert _states(ctx) == {"b1": "committed", "b2": "committed"}
    assert set(result.timings) == {"plan", "train", "score", "gate", "publish", "conclude"}


def test_a_missing_unseen_set_fails_at_plan_time_and_touches_nothing(ctx: AppContext) -> None:
    """A speaker run whose unseen-voices set is not in the store fails before anything is
    staged or trained, naming the missing prefix; ledger, registry and production are as
    they were. With the set configured to None the run goes on, and its decision says the
    open-set check was not run."""
    seed = _seed_in_production(ctx)
    versions = ctx.registry.list_versions("spk")
    _spk_batches(ctx.store, "b1")
    config = RetrainConfig.small(spk_unseen_set="voices-2027")
    with pytest.raises(NotFound, match="spk/eval/voices-2027/"):
        retrain(ctx, "spk", config, hooks=FakeSteps())
    assert _states(ctx) == {"b1": "pending"} and _production(ctx) == seed
    assert ctx.registry.list_versions("spk") == versions
    assert not ctx.store.exists(MODELS, lease_key("spk"))
    hooks = FakeSteps()
    result = retrain(ctx, "spk", RetrainConfig.small(spk_unseen_set=None), hooks=hooks)
    assert result.status == "promoted", result.message
    assert not [c for c in hooks.decisions[0].checks if c.name.startswith("unseen_")]
    assert "open-set check not run" in (result.decision_markdown or "").lower()


def test_a_candidate_worse_on_unseen_voices_is_rejected_and_not_deployed(
    ctx: AppContext,
) -> None:
    """Better on the golden set, worse on the unseen voices: rejected by the unseen-voices
    guard (recorded in history with the decision), production unchanged, batches consumed."""
    seed = _seed_in_production(ctx)
    _spk_batches(ctx.store, "b1")
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps(unseen_worse=True))
    assert result.status == "rejected" and "unseen_eer" in result.message
    assert _production(ctx) == seed and _states(ctx) == {"b1": "committed"}
    record = ctx.registry.history("spk")[-1]
    assert record["action"] == "reject"
    failed = [c["name"] for c in record["decision"]["checks"] if not c["passed"]]
    assert "unseen_eer" in failed and "eer" not in failed
    metrics = ctx.registry.show("spk", result.candidate or "").metrics
    assert metrics["unseen"]["eval_set"] == "unseen"


def test_training_rows_with_a_voice_of_the_unseen_set_are_refused(ctx: AppContext) -> None:
    """A batch that contains a voice of the unseen set: the run stops before training,
    naming the voice (the guard would measure a voice the candidate trained on)."""
    rows = [{"id": f"x{u}", "audio": f"{u}.wav", "speaker": "w3"} for u in range(2)]
    put_batch(ctx.store, "spk", "leak", rows, {f"{u}.wav": clip(1.0) for u in range(2)})
    versions = ctx.registry.list_versions("spk")
    with pytest.raises(InvalidInput, match="w3"):
        retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert ctx.registry.list_versions("spk") == versions
    assert _states(ctx)["leak"] != "committed"


def test_store_down_while_publishing_leaves_production_and_ledger(
    ctx: AppContext, flaky: FlakyStore
) -> None:
    """The store fails mid-run (uploading the candidate): the run raises, production and
    the ledger are as they were (batches staged, not committed); a re-run completes."""
    seed = _seed_in_production(ctx)
    _spk_batches(ctx.store, "b1")
    flaky.fail = lambda key: "/versions/" in key and key.endswith(".pt")
    with pytest.raises(StoreUnavailable):
        retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert _production(ctx) == seed and _states(ctx) == {"b1": "staged"}
    assert not ctx.store.exists(MODELS, lease_key("spk"))
    flaky.fail = lambda key: False
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert result.status == "promoted" and _states(ctx) == {"b1": "committed"}


def test_a_commit_failure_after_promotion_puts_the_alias_back(
    ctx: AppContext, flaky: FlakyStore
) -> None:
    """The ledger commit fails after the promotion: production goes back to what it was
    (history says why) and the batches stay uncommitted."""
    seed = _seed_in_production(ctx)
    _spk_batches(ctx.store, "b1")
    flaky.fail = lambda key: key.endswith("committed.json")
    with pytest.raises(StoreUnavailable):
        retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps())
    assert _production(ctx) == seed and _states(ctx) == {"b1": "staged"}
    last = ctx.registry.history("spk")[-1]
    assert last["action"] == "rollback" and "failed after promoting" in last["reason"]


def test_a_redeploy_failure_puts_the_alias_back_and_is_recorded(ctx: AppContext) -> None:
    """The deployer fails: the alias returns to the old version, the result and history
    say why, and the ledger is not committed (a later run retrains on the batches)."""
    seed = _seed_in_production(ctx)
    _spk_batches(ctx.store, "b1")
    result = retrain(ctx, "spk", RetrainConfig.small(), hooks=FakeSteps(),
                     deployer=BrokenDeployer(ctx.registry))  # fmt: skip
    assert result.status == "deploy_failed" and "did not complete" in result.message
    assert _production(ctx) == seed and _states(ctx) == {"b1": "staged"}
    last = ctx.registry.history("spk")[-1]
    assert last["action"] == "rollback" and "redeploy" in last["reason"]


def test_cli_retrain_reports_no_new_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``speechloop retrain spk --json`` on an empty store: exit 0, status no_new_data."""
    import json

    from typer.testing import CliRunner

    from speechloop.cli.main import app
    from speechloop.config import get_settings

    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    try:
        LocalStore(tmp_path / "store").ensure_bucket(BUCKET)
        out = CliRunner().invoke(app, ["retrain", "spk", "--small", "--json"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "no_new_data"


def test_the_training_directory_is_keyed_by_what_decides_the_training(tmp_path: Path) -> None:
    """A re-run of a killed run (same parent, batches, config; new run id) trains in the
    same directory, so the trainers resume from their checkpoints; other inputs do not."""
    from speechloop.context import ResolvedModel
    from speechloop.data.ingest import BatchReport, IngestResult
    from speechloop.loop.training_set import TrainingSet

    def plan(run_id: str, batches: list[str], epochs: int = 2) -> RunPlan:
        ingest = IngestResult(run_id, "spk", False, [
            BatchReport("spk", b, "sha", 1, 1, 0, {}, None, False) for b in batches
        ])  # fmt: skip
        parent = ResolvedModel("spk", "v1", tmp_path, "production")
        return RunPlan("spk", run_id, "v2", RetrainConfig.small(epochs=epochs), ingest,
                       TrainingSet([]), tmp_path / "runs" / f"spk-{run_id}", parent)  # fmt: skip

    first = plan("run-a", ["b1", "b2"]).train_dir
    assert plan("run-b", ["b1", "b2"]).train_dir == first
    assert plan("run-b", ["b1"]).train_dir != first
    assert plan("run-b", ["b1", "b2"], epochs=3).train_dir != first
