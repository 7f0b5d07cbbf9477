#!/usr/bin/env bash
# One idempotent setup step for a fresh machine: Python venv + project, Dapr runtime and Jaeger
# (built from Go modules, cached by version), helm + kubernetes-validate (chart check, cached),
# Redis and Chromium (Debian packages), JS test deps.
# A second run takes seconds: every step checks before it works.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }
t0=$(date +%s)

# Jaeger (the trace backend of the tests and the local run) builds in the background from the
# start: several minutes on 2 cores when not cached; waited for at the end. Killed with us.
jaeger_log=$(mktemp)
setsid ./scripts/install-jaeger.sh >/dev/null 2>"$jaeger_log" &  # own process group: go build too
jaeger_pid=$!
trap 'kill -- -"$jaeger_pid" 2>/dev/null || true; rm -f "$jaeger_log"' EXIT

apt_install() {
  local missing=()
  # `dpkg -s` succeeds for a removed package whose config files remain: ask for "installed".
  for pkg in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] \
      || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "Debian packages present: $*"
  fi
}
apt_install redis-server redis-tools chromium

# Python: reinstall only when pyproject.toml changed.
if [[ ! -x .venv/bin/python ]]; then
  log "creating virtualenv .venv (python3.11)"
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
stamp=.venv/.tasksync-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat $stamp) != "$want" ]]; then
  log "installing the project and dev tools into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > $stamp
else
  log "python deps up to date"
fi

log "Dapr runtime"
./scripts/install-dapr.sh >/dev/null

# helm (built from its Go module) and kubernetes-validate for the chart check; cached by version.
log "helm + chart validation tools"
./scripts/install-helm.sh >/dev/null

# Browser tests drive Debian's chromium with playwright-core (never a downloaded browser).
if [[ -f tests/e2e/package.json ]]; then
  if [[ ! -d tests/e2e/node_modules/playwright-core ]]; then
    log "installing playwright-core for the browser tests"
    (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
  else
    log "playwright-core present"
  fi
fi
log "Jaeger (trace backend)"
if ! wait "$jaeger_pid"; then
  cat "$jaeger_log" >&2
  log "building Jaeger failed"
  exit 1
fi
grep -E '^\[install-jaeger\]' "$jaeger_log" >&2 || true
log "setup done in $(( $(date +%s) - t0 ))s"
