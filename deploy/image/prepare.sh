#!/bin/sh
# Prepares the image's build context (see the Dockerfile): the static
# meshpki binary and the system's CA bundle. VERSION, if set, is stamped
# into the binary (meshpki --version).
set -eu
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/meshpki/meshpki/internal/buildinfo.Version=${VERSION:-}" \
  -o deploy/image/meshpki ./cmd/meshpki
cp /etc/ssl/certs/ca-certificates.crt deploy/image/ca-certificates.crt
echo "deploy/image: meshpki $(./deploy/image/meshpki --version | cut -d' ' -f2-) and the CA bundle are ready"
