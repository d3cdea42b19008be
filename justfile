# NEXUS developer tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Serve on 127.0.0.1:8080 (private PostgreSQL unless DATABASE_URL is set)
run *ARGS:
    cargo run --release -p nexus-app -- serve {{ARGS}}

# The whole test suite (what CI runs)
test *ARGS:
    cargo test --workspace {{ARGS}}

# Formatting and clippy, as CI checks them
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Rewrite openapi/openapi.json from the code, then type-check the TS client and lint the spec
openapi:
    cargo run -q -p nexus-app -- openapi --output openapi/openapi.json
    bash openapi/client-check/check.sh

# Apply pending migrations
migrate:
    cargo run -q -p nexus-app -- migrate

# Stop the private PostgreSQL clusters (dev and test)
db-stop:
    cargo run -q -p nexus-app -- db stop --all

# Everything CI does, locally
ci:
    bash .ci/run

# EXPLAIN (ANALYZE, BUFFERS) of every contact list shape on the dev database's
# `nexus-demo` organization, written to docs/perf/contacts-explain.txt
explain:
    #!/usr/bin/env bash
    set -euo pipefail
    status=$(cargo run -q -p nexus-app -- db status)
    port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' <<<"$status")
    dir=$(sed -n 's/.*socket dir \([^,]*\),.*/\1/p' <<<"$status")
    psql=(psql -h "$dir" -p "$port" -U postgres -d nexus -X -q)
    org=$("${psql[@]}" -Atc "SELECT id FROM organizations WHERE slug = 'nexus-demo'")
    "${psql[@]}" -v org="$org" -f docs/perf/contacts-explain.sql >/dev/null
    "${psql[@]}" -v org="$org" -f docs/perf/contacts-explain.sql > docs/perf/contacts-explain.txt
    grep -E '^###|Execution Time' docs/perf/contacts-explain.txt

# Benchmarks (release build, loopback only, bounded in time); see docs/benchmarks.md
bench:
    cargo bench -p nexus-app --bench auth
    cargo bench -p nexus-app --bench sales
    cargo bench -p nexus-app --bench contacts
    cargo bench -p nexus-app --bench webhooks
    cargo bench -p nexus-app --bench sse

# Server instructions per contacts request (`get` or `list`), counted by callgrind
# (valgrind); see docs/benchmarks.md, twelfth pass
instructions MODE="list":
    cargo build --release -p nexus-app
    docs/perf/count-instructions.sh target/release/nexus {{MODE}} target/callgrind-{{MODE}}.out
