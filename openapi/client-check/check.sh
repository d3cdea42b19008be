#!/usr/bin/env bash
# Proves that a TypeScript client can be generated from the committed spec
# (openapi/openapi.json) and used in a type-checked way, and that the spec
# lints clean with Redocly (zero errors; warnings are printed but tolerated).
#
#   bash openapi/client-check/check.sh
#
# Steps: npm ci (skipped when node_modules matches package-lock.json)
#        -> openapi-typescript ../openapi.json -> generated/schema.ts
#        -> tsc -p . (usage.ts must compile against the generated types)
#        -> redocly lint ../openapi.json --config ../redocly.yaml
# Only the npm registry is contacted (by npm ci, and only when installing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

start=$SECONDS

# No telemetry, update checks or notices from any tool: nothing but the npm
# registry may be reached, and only by `npm ci`.
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export REDOCLY_SUPPRESS_NOTIFICATIONS=true
export npm_config_update_notifier=false
export npm_config_audit=false
export npm_config_fund=false
export NO_UPDATE_NOTIFIER=1

current_step="start"
lint_log=""
finish() {
  local rc=$?
  [[ -n $lint_log ]] && rm -f "$lint_log"
  if ((rc != 0)); then
    echo "client-check: FAILED (exit $rc) at step: $current_step" >&2
  fi
}
trap finish EXIT

step() { current_step="$*"; printf '\n==> %s\n' "$*"; }

# 1. Dependencies. The stamp records the lockfile hash and node version that
#    node_modules was installed from; rerun `npm ci` only when either changes.
stamp_file=node_modules/.client-check-stamp
want_stamp="$(sha256sum package-lock.json | cut -d' ' -f1) node-$(node --version)"
if [[ -d node_modules && -f $stamp_file && "$(cat "$stamp_file")" == "$want_stamp" ]]; then
  step "npm ci: skipped (node_modules up to date with package-lock.json)"
else
  step "npm ci"
  npm ci --no-audit --no-fund
  printf '%s\n' "$want_stamp" >"$stamp_file"
fi

# Run a locally installed binary. Same as `npx --no-install -- "$@"` (never
# fetches anything), minus npx's ~1 s start-up per call.
run() {
  local bin="node_modules/.bin/$1"
  shift
  if [[ ! -x $bin ]]; then
    echo "$bin is missing; delete node_modules and rerun" >&2
    exit 1
  fi
  "$bin" "$@"
}

# 2. Generate the client types from the committed spec.
step "openapi-typescript ../openapi.json -> generated/schema.ts"
rm -rf generated
mkdir -p generated
run openapi-typescript ../openapi.json --output generated/schema.ts

# 3. Type-check usage.ts against them.
step "tsc -p ."
run tsc -p .

# 4. Lint the spec. Redocly exits non-zero on any error; warnings are shown.
step "redocly lint ../openapi.json --config ../redocly.yaml"
lint_log=$(mktemp)
run redocly lint ../openapi.json --config ../redocly.yaml 2>&1 | tee "$lint_log"
warnings=$(grep -oE 'You have [0-9]+ warnings?' "$lint_log" | grep -oE '[0-9]+' || true)
warnings=${warnings:-0}

echo
echo "client-check: OK in $((SECONDS - start))s: TypeScript client generated and type-checked" \
  "($(grep -c . generated/schema.ts) lines), redocly lint 0 errors, ${warnings} warning(s)"
