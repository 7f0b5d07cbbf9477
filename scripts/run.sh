#!/usr/bin/env bash
# Set up and start the whole local system (Redis with AOF, placement, two sessions hosts, two
# gateway replicas, demo producer), print where to connect and how to publish (.run/producer.env),
# restart any process that crashes (logged in .run/logs/supervisor.log), stop everything on Ctrl-C.
# Options (devtools/run.py): --free-ports --run-dir DIR for a second, independent instance.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m devtools.run "$@"
