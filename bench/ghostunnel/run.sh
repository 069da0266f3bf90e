#!/usr/bin/env bash
# Measures meshpki proxy beside ghostunnel v1.8.4, plain HTTP and Go's own
# mTLS server, in one run on this machine. See README.md.
#
# Usage: bash bench/ghostunnel/run.sh [proxy-bench flags...]
#   e.g. bash bench/ghostunnel/run.sh -duration 5s -rounds 3
# Environment:
#   PROXY_BENCH_BIN  where the binaries are built (default /tmp/proxy-bench)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${PROXY_BENCH_BIN:-/tmp/proxy-bench}
mkdir -p "$bin"
echo "== building meshpki, ghostunnel v1.8.4 and the harness into $bin"
(cd "$here/../.." && go build -o "$bin/meshpki" ./cmd/meshpki)
(
	cd "$here"
	go build -o "$bin/ghostunnel" github.com/ghostunnel/ghostunnel
	go build -o "$bin/proxy-bench" .
)
"$bin/proxy-bench" -meshpki "$bin/meshpki" -ghostunnel "$bin/ghostunnel" "$@"
