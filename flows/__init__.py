"""Prefect flows of speechloop: thin tasks over the core use-cases (``speechloop.loop``).

- ``retrain-asr`` / ``retrain-spk`` (:mod:`flows.retrain`): one retraining run, each core
  step a task (I/O steps retried with back-off, GPU steps under ``concurrency("gpu")``),
  the gate's decision a markdown artifact linked from the registry history;
- ``evaluate`` (:mod:`flows.evaluate`): score any version on any golden set;
- ``rollback`` (:mod:`flows.rollback`): serve the previous (or a named) version again;
- :mod:`flows.events`: MinIO bucket notifications -> ``speechloop.batch.complete`` events,
  which the deployments' triggers in ``prefect.yaml`` count.

Nothing here decides anything the core does not: the CLI runs the same use-cases.
"""
