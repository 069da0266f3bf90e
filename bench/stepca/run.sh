#!/bin/sh
# Builds step-ca v0.30.2 (this module's tool dependency, without cgo: its
# YubiKey support would need libpcsclite), meshpki from this checkout and the
# load client, then runs the comparison. Extra arguments go to signbench
# (-n, -rounds, -c).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/signbench-bin
mkdir -p "$out"
(cd "$here" && CGO_ENABLED=0 go build -o "$out/step-ca" github.com/smallstep/certificates/cmd/step-ca && go build -o "$out/signbench" .)
(cd "$here/../.." && go build -o "$out/meshpki" ./cmd/meshpki)
"$out/signbench" -meshpki "$out/meshpki" -step-ca "$out/step-ca" "$@"
