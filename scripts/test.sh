#!/usr/bin/env bash
# Runs all of Berth's checks and tests, as root: formatting, lints, unit tests, and integration
# tests that start real berthd daemons on temporary roots.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the integration tests need it" >&2; exit 1; }
scripts/install-deps.sh
# Incremental state is of no use to a one-off run and took 1.5 GB of a clean build's disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "disk free for the build: $(df -h --output=avail . | tail -1 | tr -d ' ') (a clean build and test run needs about 2 GB)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
