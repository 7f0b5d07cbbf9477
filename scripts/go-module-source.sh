# Sourced by install-dapr.sh and install-jaeger.sh: the steps both share around their `go build`.
# Their modules' go.mod files carry replace directives, so `go install module@version` refuses
# them: the module is copied out of the Go module cache (fetched from the proxy) and built as the
# main module. The caller sets LOG_TAG, OUT (the versioned cache folder) and STAMP before use.

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }

# exit_if_cached BINARY...: print OUT and exit when a finished build left every BINARY there.
exit_if_cached() {
  [[ -f "$STAMP" ]] || return 0
  local b
  for b in "$@"; do [[ -x "$OUT/$b" ]] || return 0; done
  log "cached: $OUT"
  echo "$OUT"
  exit 0
}

# go_module_source MODULE VERSION DIR: a writable copy of MODULE@vVERSION in DIR (kept if there).
go_module_source() {
  local module=$1 version=$2 dir=$3 src
  command -v go >/dev/null || { log "go is not installed"; exit 1; }
  log "downloading $module@v$version from the Go module proxy"
  src=$(go mod download -json "$module@v$version" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit("go mod download: "+d.get("Error","no Dir")))')
  if [[ ! -f "$dir/go.mod" ]]; then
    rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
    cp -r "$src" "$dir"; chmod -R u+w "$dir"
  fi
}

# mark_built DIR START: drop the sources (re-downloadable), stamp OUT, log the time, print OUT.
mark_built() {
  rm -rf "$1"
  touch "$STAMP"
  log "built in $(( $(date +%s) - $2 ))s -> $OUT ($(du -sh "$OUT" | cut -f1))"
  echo "$OUT"
}
