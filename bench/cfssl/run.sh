#!/bin/sh
# Builds CFSSL v1.6.5 (this module's tool dependency), meshpki from this
# checkout and the load client, then measures OCSP answers per second from
# both on the same pre-signed response. Extra arguments go to ocspbench
# (-duration, -rounds, -c).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/ocspbench-bin
mkdir -p "$out"
(cd "$here" && go build -o "$out/cfssl" github.com/cloudflare/cfssl/cmd/cfssl && go build -o "$out/ocspbench" .)
(cd "$here/../.." && go build -o "$out/meshpki" ./cmd/meshpki)
"$out/ocspbench" -meshpki "$out/meshpki" -cfssl "$out/cfssl" "$@"
