#!/usr/bin/env bash
# Builds (when tests/go changed) and runs the Go compatibility program for one client.
#
#   tests/go/run.sh franz-go|sarama --bootstrap HOST:PORT[,...] [--peer tidepool|kafka]
#                   [--records N] [--timeout S]
#   tests/go/run.sh --build          only build target/go/compat
#
# Modules come from the Go module proxy into the project-local cache .tools/go-mod (build cache
# .tools/go-build); go.sum pins them. The binary is target/go/compat.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
binary="$repo/target/go/compat"

# The machine's Go lives in /usr/local/go; a login shell puts it on PATH, CI may not.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
fi
export GOMODCACHE="$repo/.tools/go-mod" GOCACHE="$repo/.tools/go-build" GOFLAGS=-mod=mod

build() {
    command -v go >/dev/null || { echo "tests/go: no go on PATH (Go >= 1.26 needed)" >&2; return 1; }
    # Up to date: nothing under tests/go is newer than the binary.
    if [[ -x "$binary" ]] && [[ -z "$(find "$here" -type f -newer "$binary" -print -quit)" ]]; then
        return 0
    fi
    echo "tests/go: building $binary with $(go version)" >&2
    mkdir -p "$(dirname "$binary")"
    local tmp="$binary.tmp.$$"
    if ! (cd "$here" && go build -o "$tmp" ./compat) >&2; then
        rm -f "$tmp"
        echo "tests/go: go build failed (go.mod needs Go >= 1.26; this is $(go version))" >&2
        return 1
    fi
    mv -f "$tmp" "$binary"
}

case "${1:-}" in
    --build) build; "$binary" --version-info ;;
    franz-go|sarama) client="$1"; shift; build; exec "$binary" --client "$client" "$@" ;;
    *) echo "usage: tests/go/run.sh franz-go|sarama ARGS... | --build" >&2; exit 2 ;;
esac
