#!/usr/bin/env bash
# Set up and start the whole local system (Redis, placement, sessions host, two gateway replicas,
# demo producer), print where to connect, and stop everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m devtools.run "$@"
