#!/usr/bin/env bash
# Server instructions per contacts request, counted by callgrind; see count-instructions.py.
# usage: docs/perf/count-instructions.sh NEXUS_BINARY get|list|create OUT_FILE
# Uses (and on first use creates) a private cluster with the demo organization under
# $NEXUS_DATA_DIR (default /tmp/nexus-callgrind), left running for the next count (stop it
# with `NEXUS_DATA_DIR=... nexus db stop`); one HTTP worker, on 127.0.0.1:$PORT.
set -euo pipefail
bin=$(realpath "$1") mode=$2 out=$(realpath -m "$3")
export NEXUS_DATA_DIR=${NEXUS_DATA_DIR:-/tmp/nexus-callgrind} PORT=${PORT:-8099}
export NEXUS_BIND=127.0.0.1:$PORT NEXUS_WORKERS=1 RUST_LOG=warn
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$bin" serve >"$out.log" 2>&1 &
server=$!
for _ in $(seq 1 180); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 1; done
python3 "$(dirname "$0")/count-instructions.py" "$mode"
kill -INT "$server"; wait "$server" || true
total=$(grep -o 'Collected : [0-9]*' "$out.log" | grep -o '[0-9]*$')
requests=$([ "$mode" = get ] && echo 300 || echo 100)  # list and create: 100
echo "$mode: $((total / requests)) server instructions per request ($total for $requests)"
