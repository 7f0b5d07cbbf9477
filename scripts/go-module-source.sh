# Sourced by install-dapr.sh and install-jaeger.sh. Their modules' go.mod files carry replace
# directives, so `go install module@version` refuses them: the module is copied out of the Go
# module cache (fetched from the proxy) and built as the main module.
#
# go_module_source MODULE VERSION DIR: a writable copy of MODULE@vVERSION in DIR (kept if there).
go_module_source() {
  local module=$1 version=$2 dir=$3 src
  src=$(go mod download -json "$module@v$version" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit("go mod download: "+d.get("Error","no Dir")))')
  if [[ ! -f "$dir/go.mod" ]]; then
    rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
    cp -r "$src" "$dir"; chmod -R u+w "$dir"
  fi
}
