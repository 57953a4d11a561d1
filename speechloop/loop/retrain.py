"""The retraining use-case: new labelled batches in, a gated (and maybe deployed) model out.

One run of a kind (``retrain_asr`` / ``retrain_spk``), under the kind's store lease
(:mod:`.lock`: one retraining per kind at a time):

1. ``plan``: ingest the complete uncommitted batches (staged in the ledger, not
   committed), build the training set (new rows + replay sample, :mod:`.training_set`),
   resolve the production model (the parent). Nothing new: a clean "no new data" result.
2. ``train``: fine-tune the parent (ASR: two stages; speaker: fresh AAM head + network).
   The training directory is keyed by parent, batches and config, so the re-run of a
   killed run resumes from the trainers' last checkpoints.
   A speaker run first checks that its unseen-voices set exists (NotFound naming it,
   before anything is staged) and afterwards that no training row has one of its voices.
3. ``score``: candidate and production on the same golden set, same run, same code;
   speaker runs also on the unseen-voices set (the gate's open-set guard).
4. ``gate``: the paired-bootstrap decision (:mod:`speechloop.gating`).
5. ``publish``: the candidate as an immutable registry version (weights, ONNX graphs,
   metrics with both reports' figures, lineage: parent, batches, replay, configs).
6. ``conclude``: promote with the decision (or record the rejection), redeploy through
   the :class:`~speechloop.deploy.Deployer`, (speaker) re-enrol the voiceprints, and
   last commit the ledger.

A failure at any step leaves production and the ledger as they were: nothing is
committed before step 6 ends, and a failure after the promotion puts the alias back
(the rollback is recorded in history with the cause). A redeploy failure is not raised:
the alias is put back and the result says ``deploy_failed`` (the ledger stays
uncommitted, so a later run retrains on the same batches).

Each step runs through :meth:`RunHooks.run` (the flows make each one a Prefect task).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from speechloop.data.ingest import Ingestor, IngestResult, data_dir, new_run_id
from speechloop.data.manifest import Kind
from speechloop.data.types import AsrRow, SpkEvalSet, SpkRow
from speechloop.errors import InvalidInput
from speechloop.loop.config import RetrainConfig
from speechloop.loop.hooks import RunHooks
from speechloop.loop.lock import retrain_lease
from speechloop.loop.open_set import check_unseen_disjoint, require_unseen_set
from speechloop.loop.training_set import TrainingSet, assemble, batch_loader
from speechloop.registry.model import check_kind, new_version_id

if TYPE_CHECKING:
    from speechloop.context import AppContext, ResolvedModel
    from speechloop.deploy import Deployer
    from speechloop.gating import GateDecision, SpkReport

Status = Literal["no_new_data", "promoted", "rejected", "deploy_failed"]


@dataclass
class RunPlan:
    """What one run works on, fixed before training (the candidate's version included)."""

    kind: Kind
    run_id: str
    version: str
    config: RetrainConfig
    ingest: IngestResult
    training: TrainingSet[Any]
    run_dir: Path
    parent: ResolvedModel | None = None
    production: str | None = None  # the production alias at the start (None: none yet)

    @property
    def nothing_new(self) -> bool:
        """No new complete batches (or none with a good row): nothing to train on."""
        return not self.training.new

    @property
    def train_dir(self) -> Path:
        """Checkpoints, keyed by what decides the training, so a re-run resumes there."""
        parent = self.parent.version if self.parent else "none"
        key = json.dumps(
            [self.kind, parent, self.ingest.batch_ids, list(self.training.replay_batches),
             self.config.to_dict()], sort_keys=True, default=str,
        )  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.run_dir.parent / f"{self.kind}-train-{digest}"


@dataclass(frozen=True)
class Scores:
    """Candidate and production reports on the golden set and (speaker runs with an
    unseen-voices set) on that set."""

    eval_set: str
    candidate: Any  # AsrReport | SpkReport
    production: Any  # AsrReport | SpkReport | None
    unseen_set: str | None = None
    unseen: tuple[SpkReport, SpkReport | None] | None = None


@dataclass
class RetrainResult:
    """The outcome of one run: what it took, decided, published, deployed, committed."""

    kind: Kind
    run_id: str
    status: Status
    message: str
    batches: list[str] = field(default_factory=list)
    quarantined: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    candidate: str | None = None
    production_before: str | None = None
    production_after: str | None = None
    decision: dict[str, Any] | None = None
    decision_markdown: str | None = None
    links: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] | None = None
    reenrolled: list[str] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (CLI ``--json``, flow results)."""
        return dataclasses.asdict(self)


# -- step 1: plan ---------------------------------------------------------------------


def _ingestor(ctx: AppContext, kind: Kind) -> Ingestor:
    settings = ctx.settings
    return Ingestor(ctx.store, settings.data_bucket, data_dir(settings), kind, settings)


def _production(ctx: AppContext, kind: Kind) -> tuple[ResolvedModel, str | None]:
    """The parent: the production version; the shipped seed while nothing is in production
    (an empty registry, or only rejected candidates)."""
    alias = ctx.registry.get_alias(kind, "production")
    if alias is not None:
        return ctx.resolve_model(kind, alias.version), alias.version
    return ctx.resolve_model(kind, "seed"), None


def plan_run(
    ctx: AppContext, kind: Kind, config: RetrainConfig, *, run_id: str | None = None
) -> RunPlan:
    """Ingest new batches (staged, not committed) and fix the training set and parent."""
    check_kind(kind)
    run_id = run_id or new_run_id()
    settings = ctx.settings
    run_dir = ctx.layout.run_dir(f"{kind}-{run_id}")
    ingestor = _ingestor(ctx, kind)
    empty = RunPlan(kind, run_id, "", config, IngestResult(run_id, kind, False),
                    TrainingSet([]), run_dir)  # fmt: skip
    view = ingestor.ledger.survey()  # one look at the ledger: open and committed batches
    if len(view.open) < config.min_batches:
        return empty
    unseen = _unseen_speakers(ctx, kind, config)  # before anything is staged
    ingested = ingestor.run(run_id, view=view)
    if not ingested.batches:  # a concurrent consumer took them meanwhile
        return empty
    row_type: type[AsrRow] | type[SpkRow] = AsrRow if kind == "asr" else SpkRow
    load = batch_loader(ctx.store, settings.data_bucket, data_dir(settings), kind, settings)

    def typed(batch_id: str) -> list[Any]:
        return [r for r in load(batch_id) if isinstance(r, row_type)]

    new_rows = [r for r in ingested.rows if isinstance(r, row_type)]
    training = assemble(new_rows, ingested.batch_ids, view.committed, typed, config.replay)
    if unseen is not None and config.spk_unseen_set is not None:
        check_unseen_disjoint(config.spk_unseen_set, unseen, training.rows)
    plan = RunPlan(kind, run_id, new_version_id(), config, ingested, training, run_dir)
    if plan.nothing_new:
        return plan
    plan.parent, plan.production = _production(ctx, kind)
    return plan


def _unseen_speakers(ctx: AppContext, kind: Kind, config: RetrainConfig) -> frozenset[str] | None:
    """The unseen-voices set's speakers (speaker runs that configure one; else None)."""
    if kind != "spk" or config.spk_unseen_set is None:
        return None
    if config.spk_unseen_set == config.eval_set:
        raise InvalidInput(
            f"the unseen-voices set must be another set than the golden set {config.eval_set!r}"
        )
    return require_unseen_set(ctx.store, ctx.settings.data_bucket, config.spk_unseen_set)


# -- step 2: train --------------------------------------------------------------------


def train_candidate(plan: RunPlan, hooks: RunHooks) -> Path:
    """Fine-tune the parent on the plan's training set; the candidate's model directory."""
    if plan.parent is None or plan.nothing_new:
        raise InvalidInput(f"{plan.kind} run {plan.run_id} has nothing to train on")
    out = plan.run_dir / "candidate"
    shutil.rmtree(out, ignore_errors=True)
    if plan.kind == "asr":
        _train_asr(plan, hooks, out)
    else:
        _train_spk(plan, hooks, out)
    (out / "training.json").write_text(json.dumps(plan.training.summary(), indent=1) + "\n")
    return out


def _train_asr(plan: RunPlan, hooks: RunHooks, out: Path) -> None:
    from speechloop.asr.finetune import finetune_model
    from speechloop.asr.model import load_from_dir, save_to_dir

    assert plan.parent is not None
    loaded = load_from_dir(plan.parent.directory, version=plan.parent.version)
    result = finetune_model(
        loaded, plan.training.rows, plan.config.asr_config(), work_dir=plan.train_dir,
        progress=False, callbacks=hooks.callbacks("asr"),
    )  # fmt: skip
    save_to_dir(result.loaded, out)
    (out / "finetune.json").write_text(json.dumps(result.summary(), indent=1) + "\n")


def _train_spk(plan: RunPlan, hooks: RunHooks, out: Path) -> None:
    from speechloop.speaker.finetune.pipeline import split_rows
    from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials
    from speechloop.speaker.loading import load_model_dir

    assert plan.parent is not None
    model = dataclasses.replace(load_model_dir(plan.parent.directory), version=plan.version)
    train, valid = split_rows(plan.training.rows)
    trainer = Trainer(model, train, ValidSet(rows=valid, trials=all_pairs_trials(valid)),
                      plan.train_dir, plan.config.spk_config())  # fmt: skip
    result = trainer.fit(resume=True, callbacks=hooks.callbacks("spk"))
    shutil.copytree(result.best_dir, out)


# -- step 3-4: score and gate ---------------------------------------------------------


def load_eval_set(ctx: AppContext, kind: Kind, name: str) -> list[AsrRow] | SpkEvalSet:
    """The validated golden set ``name`` of ``kind`` (cached under the work directory)."""
    from speechloop.data.dataset import load_asr_eval_set, load_spk_eval_set

    settings = ctx.settings
    where = (ctx.store, settings.data_bucket, name, data_dir(settings), settings)
    return load_asr_eval_set(*where) if kind == "asr" else load_spk_eval_set(*where)


def score_model(
    kind: Kind, model_dir: Path, version: str, data: list[AsrRow] | SpkEvalSet, eval_set: str
) -> Any:
    """One model's per-item report on an evaluation set (torch backend)."""
    from speechloop.loop.scoring import score_asr_dir, score_spk_dir

    if kind == "asr":
        assert isinstance(data, list)
        return score_asr_dir(model_dir, version, data, eval_set=eval_set)
    assert isinstance(data, SpkEvalSet)
    return score_spk_dir(model_dir, version, data, eval_set=eval_set)


def score_pair(ctx: AppContext, plan: RunPlan, candidate_dir: Path) -> Scores:
    """Candidate and production scored on the same golden set in this run."""
    assert plan.parent is not None
    name = plan.config.eval_set
    data = load_eval_set(ctx, plan.kind, name)
    candidate = score_model(plan.kind, candidate_dir, plan.version, data, name)
    production = score_model(plan.kind, plan.parent.directory, plan.parent.version, data, name)
    if plan.kind == "spk":
        _calibrate(candidate_dir, candidate)
    unseen = plan.config.spk_unseen_set if plan.kind == "spk" else None
    if unseen is None:
        return Scores(name, candidate, production)
    voices = load_eval_set(ctx, "spk", unseen)
    parent = plan.parent
    pair = (score_model("spk", candidate_dir, plan.version, voices, unseen),
            score_model("spk", parent.directory, parent.version, voices, unseen))  # fmt: skip
    return Scores(name, candidate, production, unseen, pair)


def _calibrate(model_dir: Path, report: Any) -> None:
    """The candidate's verification threshold, from its own scores on the golden trials."""
    from speechloop.speaker.calibration import calibrate, save_calibration

    save_calibration(calibrate(report.scores(), report.labels()), model_dir)


def judge(plan: RunPlan, scores: Scores) -> GateDecision:
    """The gate's decision on the two reports (paired bootstrap; see speechloop.gating)."""
    from speechloop.gating import decide

    return decide(scores.candidate, scores.production, plan.config.gate, unseen=scores.unseen)


# -- step 5: publish ------------------------------------------------------------------


def publish_candidate(
    ctx: AppContext, plan: RunPlan, candidate_dir: Path, scores: Scores, decision: GateDecision
) -> str:
    """Publish the candidate (weights, ONNX, metrics, lineage) as ``plan.version``."""
    from speechloop.publishing import publish_model

    assert plan.parent is not None
    metrics = {
        "eval_set": scores.eval_set,
        "candidate": scores.candidate.summary(),
        "production": scores.production.summary() if scores.production else None,
        "gate": {"promote": decision.promote, "reasons": list(decision.reasons)},
    }
    if scores.unseen is not None:
        cand, prod = scores.unseen
        metrics["unseen"] = {"eval_set": scores.unseen_set, "candidate": cand.summary(),
                             "production": prod.summary() if prod else None}  # fmt: skip
    lineage = {
        "parent": plan.parent.version,
        "parent_source": plan.parent.source,
        "data_batches": plan.ingest.batch_ids,
        "replay_batches": list(plan.training.replay_batches),
        "training": plan.training.summary(),
        "training_config": plan.config.to_dict(),
        "run_id": plan.run_id,
    }
    info = publish_model(
        ctx, plan.kind, candidate_dir, metrics=metrics, lineage=lineage, version=plan.version
    )
    return str(info.version)


# -- step 6: conclude -----------------------------------------------------------------


@dataclass
class Conclusion:
    """What step 6 did."""

    status: Status
    message: str
    production_after: str | None
    deploy: dict[str, Any] | None = None
    reenrolled: list[str] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)


def conclude(
    ctx: AppContext,
    plan: RunPlan,
    decision: GateDecision,
    links: dict[str, Any],
    deployer: Deployer,
) -> Conclusion:
    """Promote and redeploy (or record the rejection), re-enrol, then commit the ledger."""
    record = {**decision.to_dict(), "links": links, "run_id": plan.run_id}
    reason = f"{plan.config.reason} (run {plan.run_id})"
    ingestor = _ingestor(ctx, plan.kind)
    if not decision.promote:
        ctx.registry.reject(plan.kind, plan.version, reason=reason, decision=record)
        committed = ingestor.commit(plan.ingest)
        why = "; ".join(decision.reasons)
        return Conclusion("rejected", f"candidate {plan.version} rejected: {why}",
                          plan.production, committed=committed)  # fmt: skip
    ctx.registry.promote(plan.kind, plan.version, reason=reason, decision=record)
    try:
        outcome = deployer.redeploy(plan.kind, plan.version, reason=reason)
    except Exception as exc:  # noqa: BLE001 - any deployer fault (k8s API, timeout) puts the alias back
        cause = f"redeploy of {plan.kind}/{plan.version} failed: {exc}"
        _put_back(ctx, plan, cause)
        return Conclusion("deploy_failed", cause, plan.production)
    try:
        reenrolled = _reenrol(ctx, plan) if plan.kind == "spk" else []
        committed = ingestor.commit(plan.ingest)
    except BaseException as exc:
        _put_back(ctx, plan, f"run {plan.run_id} failed after promoting: {exc}")
        raise
    return Conclusion("promoted", f"candidate {plan.version} promoted and deployed",
                      plan.version, outcome.to_dict(), reenrolled, committed)  # fmt: skip


def _reenrol(ctx: AppContext, plan: RunPlan) -> list[str]:
    """Voiceprints are per model version: rebuild them for the new one from stored audio."""
    return list(ctx.voiceprints.reenroll(ctx.speaker_embedder(plan.version)))


def _put_back(ctx: AppContext, plan: RunPlan, cause: str) -> None:
    """Point production back at what it was before this run (history records ``cause``)."""
    alias = ctx.registry.get_alias(plan.kind, "production")
    if alias is None or alias.version != plan.version:
        return  # someone else moved it, or the deployer already undid it
    if plan.production is None:
        # No earlier registry version to return to (the parent was the shipped seed):
        # the alias stays on this verified version and history says why.
        ctx.registry.reject(plan.kind, plan.version, reason=cause)
        return
    ctx.registry.rollback(plan.kind, to_version=plan.production, reason=cause)


# -- the run --------------------------------------------------------------------------


def retrain(
    ctx: AppContext,
    kind: Kind,
    config: RetrainConfig | None = None,
    *,
    hooks: RunHooks | None = None,
    deployer: Deployer | None = None,
    run_id: str | None = None,
) -> RetrainResult:
    """One retraining run of ``kind`` (see the module docstring)."""
    config = config or RetrainConfig()
    hooks = hooks or RunHooks()
    run_id = run_id or new_run_id()
    if deployer is None:
        from speechloop.deploy import make_deployer

        deployer = make_deployer(ctx.settings, ctx.registry)
    timings: dict[str, float] = {}

    def step(name: str, message: str, fn: Any, *args: Any) -> Any:
        hooks.step(kind, name, message)
        started = time.perf_counter()
        try:
            return hooks.run(name, fn, *args)
        finally:
            timings[name] = round(time.perf_counter() - started, 2)

    models_bucket = ctx.settings.models_bucket
    with retrain_lease(ctx.store, models_bucket, kind, run_id, config.lease_ttl_s):
        plan = step("plan", "ingesting new batches", plan_run_step, ctx, kind, config, run_id)
        result = _result(plan, timings)
        if plan.nothing_new:
            return _no_new_data(ctx, plan, result)
        assert plan.parent is not None
        what = f"fine-tuning {plan.parent.version} on {len(plan.training.rows)} rows"
        candidate_dir = step("train", what, train_candidate, plan, hooks)
        sets = config.eval_set + (f" and {config.spk_unseen_set} (unseen voices)"
                                  if kind == "spk" and config.spk_unseen_set else "")  # fmt: skip
        scores = step("score", f"scoring on {sets}", score_pair, ctx, plan, candidate_dir)
        decision = step("gate", "paired bootstrap", judge, plan, scores)
        step("publish", f"publishing {plan.version}", publish_candidate, ctx, plan,
             candidate_dir, scores, decision)  # fmt: skip
        result.links = hooks.decision(kind, decision)
        result.decision = decision.to_dict()
        result.decision_markdown = decision.to_markdown()
        outcome = step("conclude", "promote or reject, redeploy, commit", conclude, ctx, plan,
                       decision, result.links, deployer)  # fmt: skip
    result.status, result.message = outcome.status, outcome.message
    result.production_after = outcome.production_after
    result.deploy, result.reenrolled = outcome.deploy, outcome.reenrolled
    result.committed = outcome.committed
    return result


def plan_run_step(ctx: AppContext, kind: Kind, config: RetrainConfig, run_id: str) -> RunPlan:
    """:func:`plan_run` with positional arguments (what the step runner calls)."""
    return plan_run(ctx, kind, config, run_id=run_id)


def _result(plan: RunPlan, timings: dict[str, float]) -> RetrainResult:
    return RetrainResult(
        kind=plan.kind, run_id=plan.run_id, status="no_new_data", message="",
        batches=plan.ingest.batch_ids, quarantined=len(plan.ingest.quarantined),
        training=plan.training.summary(),
        parent=plan.parent.version if plan.parent else None,
        candidate=plan.version or None, production_before=plan.production,
        production_after=plan.production, timings=timings,
    )  # fmt: skip


def _no_new_data(ctx: AppContext, plan: RunPlan, result: RetrainResult) -> RetrainResult:
    """End cleanly; batches whose every row was quarantined are consumed (reported)."""
    result.candidate = None
    if not plan.ingest.batches:
        result.message = f"no new {plan.kind} data: no complete uncommitted batch"
        return result
    result.committed = _ingestor(ctx, plan.kind).commit(plan.ingest)
    result.message = (
        f"no new {plan.kind} data: {len(plan.ingest.batches)} batch(es) had no good row "
        f"({result.quarantined} quarantined; see {plan.kind}/quarantine/ in the data bucket)"
    )
    return result


def retrain_asr(
    ctx: AppContext,
    config: RetrainConfig | None = None,
    *,
    hooks: RunHooks | None = None,
    deployer: Deployer | None = None,
    run_id: str | None = None,
) -> RetrainResult:
    """Retrain the ASR model (two-stage fine-tune) on new batches; see :func:`retrain`."""
    return retrain(ctx, "asr", config, hooks=hooks, deployer=deployer, run_id=run_id)


def retrain_spk(
    ctx: AppContext,
    config: RetrainConfig | None = None,
    *,
    hooks: RunHooks | None = None,
    deployer: Deployer | None = None,
    run_id: str | None = None,
) -> RetrainResult:
    """Retrain the speaker model on new batches, re-enrolling voiceprints; see :func:`retrain`."""
    return retrain(ctx, "spk", config, hooks=hooks, deployer=deployer, run_id=run_id)


__all__ = [
    "Conclusion",
    "RetrainResult",
    "RunPlan",
    "Scores",
    "conclude",
    "judge",
    "plan_run",
    "publish_candidate",
    "retrain",
    "retrain_asr",
    "retrain_spk",
    "score_pair",
    "train_candidate",
]
