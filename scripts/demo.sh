#!/usr/bin/env bash
# The main job: a real call between two wakeline user agents on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cargo run --release --quiet -- demo "$@"
