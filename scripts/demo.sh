#!/usr/bin/env bash
# `make demo`: the main job on the embedded default (a local-directory object store).
#
# Now (issue 2): generate a synthetic labelled corpus, add a batch with deliberately bad
# rows, ingest (every row validated, bad rows quarantined with their reason), commit,
# and show the ledger. Later issues grow it: seed models, a retraining cycle, promotion,
# the service answering on localhost.
set -euo pipefail
cd "$(dirname "$0")/.."

SL=.venv/bin/speechloop
PY=.venv/bin/python
export SPEECHLOOP_STORE="file://$PWD/.speechloop/demo-store"
export SPEECHLOOP_WORK_DIR="$PWD/.speechloop/demo-work"
RUN_ID="demo-$(date -u +%Y%m%dT%H%M%S)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Every demo starts from an empty store, so it always shows the same story.
rm -rf .speechloop/demo-store .speechloop/demo-work

step "1. Generate a synthetic labelled corpus into $SPEECHLOOP_STORE"
$SL data generate --preset demo

step "2. A producer uploads a batch with bad rows (corrupt audio, too short, empty text, path escaping the batch, no speaker)"
$PY scripts/demo_faults.py

step "3. What is waiting to be ingested (golden eval sets validated: they must be clean)"
$SL data status --check-eval

step "4. Ingest: validate every row, write 16 kHz mono WAVs locally, quarantine bad rows"
$SL data ingest --run-id "$RUN_ID" --show 30
echo "Quarantine reports for producers: asr/quarantine/<batch>/report.json in the data bucket, e.g.:"
$PY - <<'PYEOF'
import json
from speechloop.config import get_settings
from speechloop.storage import open_store
s = get_settings()
report = json.loads(open_store(s).get_bytes(s.data_bucket, "asr/quarantine/demo-faulty/report.json"))
print(json.dumps({k: report[k] for k in ("batch_id", "rows_in", "good", "quarantined", "reasons")}))
PYEOF

step "5. The consumer's work succeeded: commit the batches in the ledger"
$SL data commit --run-id "$RUN_ID"
$SL data status

step "6. Ingest again: committed batches are never consumed twice"
$SL data ingest
