#!/usr/bin/env bash
# Offline check of the Helm chart deploy/helm/tasksync: helm lint, helm template for every values
# scenario, Kubernetes schemas (kubernetes-validate), Dapr 1.18.2 CRD schemas and the chart's
# contract (deploy/check_chart.py). No cluster needed. Tools come from scripts/install-helm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM=$(./scripts/install-helm.sh)
VENV="${TASKSYNC_CACHE:-$HOME/.cache/tasksync}/deploy-venv"
exec "$VENV/bin/python" deploy/check_chart.py "$HELM"
