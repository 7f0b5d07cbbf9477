#!/usr/bin/env bash
# Build daprd, placement and scheduler from Go modules (no release downloads here).
# The dapr CLI is not built: the Go proxy here refuses github.com/dapr/cli v1.13-v1.18 (403) and
# the /@v/list of it, so scripts/devrun.py reads dapr.yaml and starts the processes itself.
# 1.18.2, not 1.18.3: the Go proxy here refuses durabletask-go v0.12.4 (403), which 1.18.3 requires.
# Idempotent: binaries are cached outside the work tree, keyed by version.
set -euo pipefail

DAPR_VERSION="${DAPR_VERSION:-1.18.2}"
CACHE_ROOT="${TASKSYNC_CACHE:-$HOME/.cache/tasksync}"
OUT="$CACHE_ROOT/dapr-$DAPR_VERSION"
STAMP="$OUT/.built"

LOG_TAG=install-dapr
source "$(dirname "$0")/go-module-source.sh"
exit_if_cached daprd placement scheduler

mkdir -p "$OUT"
export CGO_ENABLED=0
start=$(date +%s)
BUILD_DIR="$CACHE_ROOT/src/dapr-$DAPR_VERSION"
go_module_source "github.com/dapr/dapr" "$DAPR_VERSION" "$BUILD_DIR"

log "building daprd, placement, scheduler (-tags stablecomponents); this takes many minutes on 2 cores"
( cd "$BUILD_DIR" && go build -trimpath -tags stablecomponents -ldflags "-s -w \
    -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION \
    -X github.com/dapr/kit/logger.DaprVersion=$DAPR_VERSION" \
    -o "$OUT/" ./cmd/daprd ./cmd/placement ./cmd/scheduler )
"$OUT/daprd" --version >&2
mark_built "$BUILD_DIR" "$start"
