#!/usr/bin/env bash
# The LONG soak: a release build of `skyhook serve`, 100,000 events fanned out
# to 50 endpoints (5,000,000 deliveries) through a local receiver that fails
# ~10 % of its answers, a SIGKILL + restart in the middle, and a check that
# the server's RSS is flat after warm-up (RSS at 100 % vs at 25 % of the
# deliveries). Everything runs on 127.0.0.1 and stops by itself at the
# deadline. Expect tens of minutes on 2 cores.
#
# Usage: scripts/soak.sh
# Knobs (environment):
#   SKYHOOK_SOAK_EVENTS        events to publish        (default 100000)
#   SKYHOOK_SOAK_ENDPOINTS     endpoints per event      (default 50)
#   SKYHOOK_SOAK_FAIL_PERCENT  receiver failure rate %  (default 10)
#   SKYHOOK_SOAK_RESTART       kill (SIGKILL) | term (SIGTERM)   (default kill)
#   SKYHOOK_SOAK_DEADLINE_SECS give up after this long (default 90 + deliveries/300)
# The short soak (5,000 × 5) runs in the normal test command:
#   cargo test -p skyhook --test soak
set -euo pipefail
cd "$(dirname "$0")/.."
export SKYHOOK_SOAK_EVENTS="${SKYHOOK_SOAK_EVENTS:-100000}"
export SKYHOOK_SOAK_ENDPOINTS="${SKYHOOK_SOAK_ENDPOINTS:-50}"
echo "long soak: ${SKYHOOK_SOAK_EVENTS} events x ${SKYHOOK_SOAK_ENDPOINTS} endpoints (release build)"
exec cargo test --release -p skyhook --test soak -- --ignored --exact long_soak --nocapture "$@"
