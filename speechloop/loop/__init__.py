"""The retraining loop as plain functions: retrain, evaluate, roll back.

    from speechloop.loop import RetrainConfig, retrain_asr, rollback
    result = retrain_asr(ctx, RetrainConfig.small())
    result.status  # "no_new_data" | "promoted" | "rejected" | "deploy_failed"

The CLI (``speechloop retrain``, ``speechloop rollback``) and the Prefect flows
(``flows/``) call these; nothing here imports Prefect. Steps and failure rules:
:mod:`.retrain`. Heavy libraries (torch, funasr) load only when a run trains or scores.
"""

from speechloop.loop.config import ReplayConfig, RetrainConfig
from speechloop.loop.evaluate import Evaluation, evaluate_version
from speechloop.loop.hooks import RunHooks
from speechloop.loop.retrain import RetrainResult, RunPlan, retrain, retrain_asr, retrain_spk
from speechloop.loop.rollback import RollbackResult, rollback
from speechloop.loop.training_set import TrainingSet

__all__ = [
    "Evaluation",
    "ReplayConfig",
    "RetrainConfig",
    "RetrainResult",
    "RollbackResult",
    "RunHooks",
    "RunPlan",
    "TrainingSet",
    "evaluate_version",
    "retrain",
    "retrain_asr",
    "retrain_spk",
    "rollback",
]
