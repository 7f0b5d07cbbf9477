#!/usr/bin/env bash
# Build Jaeger (the v2 binary, github.com/jaegertracing/jaeger/cmd/jaeger) from its Go module: the
# trace backend the tests and the local run send Dapr's and the gateway's spans to.
# Module tag v1.76.0 is the v2.x release (one commit carries both tags); its cmd/jaeger is the
# OpenTelemetry-collector based binary: with no --config it runs all-in-one, in-memory storage.
# `go install …@v1.76.0` refuses (go.mod has a replace directive), so, as for Dapr, the module is
# copied and built as the main module.
# Idempotent: the binary is cached outside the work tree, keyed by version.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-1.76.0}"
CACHE_ROOT="${TASKSYNC_CACHE:-$HOME/.cache/tasksync}"
OUT="$CACHE_ROOT/jaeger-$JAEGER_VERSION"
STAMP="$OUT/.built"

LOG_TAG=install-jaeger
source "$(dirname "$0")/go-module-source.sh"
exit_if_cached jaeger

mkdir -p "$OUT"
export CGO_ENABLED=0
start=$(date +%s)
BUILD_DIR="$CACHE_ROOT/src/jaeger-$JAEGER_VERSION"
go_module_source "github.com/jaegertracing/jaeger" "$JAEGER_VERSION" "$BUILD_DIR"

# No `ui` build tag: the query API is all the tests need; the UI shows a placeholder page.
log "building cmd/jaeger; this takes several minutes on 2 cores"
( cd "$BUILD_DIR" && go build -trimpath -ldflags "-s -w \
    -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION" \
    -o "$OUT/jaeger" ./cmd/jaeger )
{ "$OUT/jaeger" version || true; echo; } >&2  # its JSON ends without a newline
mark_built "$BUILD_DIR" "$start"
