"""The loop's story for ``make demo`` and the end-to-end test, framework-free.

- :mod:`.story`: the data (base corpus, new batches, a mislabelled batch, a batch with
  bad rows), the probes sent to the service, and the data ledger's check;
- :mod:`.client`: the service's REST API over HTTP, and its answers as values;
- :mod:`.processes`: background servers (``speechloop serve``, ``prefect server start``)
  with pid and log files;
- :mod:`.journal`: what an earlier run finished, so the next one reuses it.

``scripts/demo.py`` sequences and prints these steps and runs the Prefect flows;
``tests/e2e/test_loop_e2e.py`` runs the same steps and asserts each one.
"""
