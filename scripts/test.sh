#!/usr/bin/env bash
# Runs all of Berth's checks and tests, as root: formatting, lints, unit tests, and integration
# tests that start real berthd daemons on temporary roots.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the integration tests need it" >&2; exit 1; }
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
