#!/usr/bin/env bash
# Tools for the Helm chart check (scripts/check-chart.sh), cached outside the work tree:
#  - helm, built from its Go module (no release download), in ~/.cache/tasksync/helm-<version>/;
#  - a small venv with kubernetes-validate (it bundles the Kubernetes JSON schemas), in
#    ~/.cache/tasksync/deploy-venv/, keyed by the pinned requirement.
# Idempotent: a second run only checks the stamps. Prints the helm binary's path.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CACHE_ROOT="${TASKSYNC_CACHE:-$HOME/.cache/tasksync}"
OUT="$CACHE_ROOT/helm-$HELM_VERSION"
VENV="$CACHE_ROOT/deploy-venv"

log() { printf '[install-helm] %s\n' "$*" >&2; }

if [[ -f "$OUT/.built" && -x "$OUT/helm" ]]; then
  log "cached: $OUT/helm (helm $HELM_VERSION)"
else
  command -v go >/dev/null || { log "go is not installed"; exit 1; }
  mkdir -p "$OUT"
  start=$(date +%s)
  log "building helm.sh/helm/v3/cmd/helm@v$HELM_VERSION (go install)"
  CGO_ENABLED=0 GOBIN="$OUT" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  "$OUT/helm" version --short >&2
  touch "$OUT/.built"
  log "built in $(( $(date +%s) - start ))s -> $OUT/helm"
fi

if [[ -f "$VENV/.installed" && $(cat "$VENV/.installed") == "$KUBERNETES_VALIDATE" ]]; then
  log "cached: $VENV ($KUBERNETES_VALIDATE)"
else
  log "creating $VENV with $KUBERNETES_VALIDATE"
  rm -rf "$VENV"
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE"
  echo "$KUBERNETES_VALIDATE" > "$VENV/.installed"
fi
echo "$OUT/helm"
