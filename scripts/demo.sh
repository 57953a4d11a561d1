#!/usr/bin/env bash
# `make demo`: the whole loop on the embedded default (local-directory store, seed
# models, the service, Prefect flows). scripts/demo.py tells the story; its state lives
# in .speechloop/demo/ and a second run reuses it (`make clean` starts over).
#
#   bash scripts/demo.sh          run (or resume) the story
#   bash scripts/demo.sh status   what runs, where
#   bash scripts/demo.sh stop     stop the service and the Prefect server
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
