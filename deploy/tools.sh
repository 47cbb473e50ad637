#!/usr/bin/env bash
# Makes decK and promtool available to `go tool task check:configs`: the
# ones on PATH if there are any, else Debian's packages (deck, prometheus)
# unpacked into .tools/ with `apt-get download` and `dpkg-deb -x`. Nothing is
# installed system-wide and no service is started (the prometheus package
# would enable a Prometheus server). Exits non-zero with one line saying what
# is missing when it cannot get them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.tools/bin
mkdir -p "$bin"

need=()
for tool in deck:deck promtool:prometheus; do
  name=${tool%%:*} pkg=${tool#*:}
  if [[ -x $bin/$name ]] || command -v "$name" >/dev/null 2>&1; then
    continue
  fi
  need+=("$pkg")
done
((${#need[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "tools: need deck and promtool (Debian packages: ${need[*]}); install them or put them on PATH" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -qq "${need[@]}" >/dev/null 2>&1); }
if ! download; then
  # The package lists may be missing on a fresh machine: refresh them (root only).
  if [[ $(id -u) -ne 0 ]] || ! apt-get update -qq >/dev/null 2>&1 || ! download; then
    echo "tools: could not download the Debian packages ${need[*]} (apt-get download; apt-get update needs root)" >&2
    exit 1
  fi
fi
for deb in "$tmp"/*.deb; do
  dpkg-deb -x "$deb" "$tmp/root"
done
for name in deck promtool; do
  if [[ -x $tmp/root/usr/bin/$name ]]; then
    cp "$tmp/root/usr/bin/$name" "$bin/$name"
    echo "tools: $name from Debian into $bin"
  fi
done
