"""The gateway with adaptive batching off, for :mod:`benchmarks.bench_service_load` only.

``bentoml serve benchmarks.service_nobatch:Gateway`` imports this module in every worker
(the gateway and the model services it depends on), so turning the model services'
batchable APIs into plain ones here means every call runs alone: one request, one
engine call. The methods already take and return lists, and the gateway sends lists of
one, so nothing else changes. (BentoML's ``max_batch_size`` cannot be 1; its
``batching`` config key is not read by 1.4's new-style services.)
"""

from __future__ import annotations

from typing import Any, cast

from service.app import Gateway
from service.asr import AsrService
from service.speaker import SpeakerService

for _service in (AsrService, SpeakerService):
    for _api in cast(Any, _service).apis.values():
        _api.batchable = False

__all__ = ["Gateway"]
