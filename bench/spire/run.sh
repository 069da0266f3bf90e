#!/usr/bin/env bash
# Measures SPIRE v1.13.3 on this machine: Workload API fetch latency,
# entry→SVID latency and batch minting throughput. See README.md.
#
# Usage: bash bench/spire/run.sh [spire-bench flags...]
#   e.g. bash bench/spire/run.sh -entries 10 -mint 200   (a quicker run)
# Environment:
#   SPIRE_BENCH_BIN   where the binaries are built (default /tmp/spire)
#   SPIRE_BENCH_PORT  server port on 127.0.0.1 (default 18081)
#   SPIRE_BENCH_KEEP  set to 1 to keep the work directory (configs, logs)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${SPIRE_BENCH_BIN:-/tmp/spire}
port=${SPIRE_BENCH_PORT:-18081}
td=bench.internal

# Only needed when the module cache is cold: that module's old versions are
# not in the checksum database.
export GONOSUMDB=github.com/GoogleCloudPlatform/cloudsql-proxy

echo "== building SPIRE v1.13.3 and the harness into $bin (first build takes several minutes)"
mkdir -p "$bin"
(
	cd "$here"
	go build -o "$bin/" github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	go build -o "$bin/spire-bench" .
)
"$bin/spire-server" --version 2>&1 | sed 's/^/spire-server /'

work=$(mktemp -d /tmp/spire-bench.XXXXXX)
server_pid=""
agent_pid=""
cleanup() {
	local rc=$?
	for pid in $agent_pid $server_pid; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $agent_pid $server_pid; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ]; then
		echo "== failed (exit $rc); last log lines:" >&2
		tail -n 20 "$work/server.log" "$work/agent.log" >&2 2>/dev/null || true
	fi
	if [ "${SPIRE_BENCH_KEEP:-}" = 1 ]; then
		echo "== kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/server" "$work/agent"
server_sock="$work/server/api.sock"
agent_sock="$work/agent/workload.sock"

cat >"$work/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = "$port"
    socket_path = "$server_sock"
    trust_domain = "$td"
    data_dir = "$work/server/data"
    log_level = "INFO"
    default_x509_svid_ttl = "1h"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$work/server/data/datastore.sqlite3"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
EOF

cat >"$work/agent.conf" <<EOF
agent {
    data_dir = "$work/agent/data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "$port"
    socket_path = "$agent_sock"
    trust_bundle_path = "$work/bundle.pem"
    trust_domain = "$td"
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
EOF

# wait_healthy NAME CMD...: run CMD until it succeeds, for at most 60 s.
wait_healthy() {
	local name=$1
	shift
	for _ in $(seq 120); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	echo "$name did not become healthy within 60s" >&2
	return 1
}

echo "== starting spire-server on 127.0.0.1:$port"
"$bin/spire-server" run -config "$work/server.conf" >"$work/server.log" 2>&1 &
server_pid=$!
wait_healthy spire-server "$bin/spire-server" healthcheck -socketPath "$server_sock"

"$bin/spire-server" bundle show -socketPath "$server_sock" >"$work/bundle.pem"
token=$("$bin/spire-server" token generate -socketPath "$server_sock" -ttl 600 | awk '/^Token:/ {print $2}')
[ -n "$token" ] || { echo "no join token" >&2; exit 1; }

echo "== starting spire-agent (join_token attestation)"
"$bin/spire-agent" run -config "$work/agent.conf" -joinToken "$token" >"$work/agent.log" 2>&1 &
agent_pid=$!
wait_healthy spire-agent "$bin/spire-agent" healthcheck -socketPath "$agent_sock"

echo "== running the harness (about 6 minutes with the defaults)"
timeout 1800 "$bin/spire-bench" \
	-workload-addr "unix://$agent_sock" \
	-server-socket "$server_sock" \
	-agent-id "spiffe://$td/spire/agent/join_token/$token" \
	"$@"
