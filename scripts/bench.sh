#!/usr/bin/env bash
# Builds the release binaries and prints the benchmark figures (see crates/cml-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p cml -p cml-sim -p cml-bench --quiet
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/release/cml-bench" "$@"
