#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (a Python
# virtualenv with moto server and the template linters), starts moto on a free
# local port, lints, and runs every test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s\n' "$*"; }

step "Python tools (.venv: moto server, cfn-lint, aws-sam-cli)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv && python3 -m venv .venv
fi
stamp=.venv/.requirements-$(sha256sum scripts/requirements-test.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  touch "$stamp"
fi

step "moto server"
MOTO_PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"${TMPDIR:-/tmp}/skyhook-moto-$MOTO_PORT.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null || { echo "moto server did not start"; exit 1; }
export SKYHOOK_TEST_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
echo "moto on $SKYHOOK_TEST_MOTO_URL"

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

if [ -f template.yaml ]; then
  step "template.yaml: cfn-lint and sam validate --lint"
  .venv/bin/cfn-lint template.yaml
  AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --template template.yaml
fi

step "build (the Lambda end-to-end tests run the real function binaries)"
cargo build --workspace --all-features --bins --quiet

step "tests"
set +e
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/skyhook-test-output.txt"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "${TMPDIR:-/tmp}/skyhook-test-output.txt" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "${TMPDIR:-/tmp}/skyhook-test-output.txt" | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
exit "$status"
