#!/usr/bin/env bash
# Runs every check and test of the workspace. This is the command README.md
# names and the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
