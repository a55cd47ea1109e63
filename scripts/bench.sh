#!/usr/bin/env bash
# Builds the binaries and prints the benchmark figures (see crates/cml-bench). The figures are
# of the `release` profile, what `cargo run --release` and `cargo install` give; set
# CML_BENCH_PROFILE=dist to measure the published binaries' profile instead.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${CML_BENCH_PROFILE:-release}"
# moto, for the AWS figures, where scripts/test.sh installs it.
venv="${CML_TEST_VENV:-$HOME/.cache/cml-venv}"
if [ -x "$venv/bin/moto_server" ]; then
  export PATH="$venv/bin:$PATH"
fi
cargo build --profile "$profile" -p cml -p cml-sim -p cml-bench --quiet
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/$profile/cml-bench" "$@"
