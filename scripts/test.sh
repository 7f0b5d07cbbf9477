#!/usr/bin/env bash
# The full test suite: setup, static checks, unit tests, JS client tests, then integration and
# browser tests through real daprd, placement and Redis (the suite starts its own, on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
log() { printf '\n[test] %s\n' "$*" >&2; }
t0=$(date +%s)

log "ruff"
.venv/bin/ruff check actors gateway vocab devtools tests demo bench clients deploy
log "mypy (strict on actors/, gateway/ and vocab/)"
.venv/bin/mypy actors gateway vocab
log "unit tests"
.venv/bin/python -m pytest -q tests/unit -p no:cacheprovider
log "JS client tests (node --test)"
(cd clients/js && node --test test/)
log "helm chart (lint, template, Kubernetes + Dapr CRD schemas; offline)"
./scripts/check-chart.sh
log "integration + browser tests (real daprd, placement, Redis, Chromium)"
# exit 5 = no tests collected: a failure here, never a pass.
set +e
.venv/bin/python -m pytest -q tests/integration tests/e2e -p no:cacheprovider -x
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "[test] no integration tests collected" >&2; exit 1; fi
log "all done in $(( $(date +%s) - t0 ))s (rc=$rc)"
exit $rc
