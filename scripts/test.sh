#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test (unit and
# integration, the latter against throwaway TLS clusters the harness starts itself).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_deps
log "running the test suite"
cargo test --locked --all-targets --features test-hooks -- --test-threads="${OPSCTL_TEST_THREADS:-4}" "$@"
