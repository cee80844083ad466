#!/usr/bin/env bash
# Every test: format, lints, the API docs' links, the sans-IO clock rule, unit + property tests,
# and interop tests against real peers (sipp) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The library alone (no CLI dependencies), as an app embeds it.
cargo clippy --lib --no-default-features --quiet -- -D warnings
# The API docs an app team reads: every intra-doc link resolves and none points at a private item.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
# The bindings crate's own unit tests (the Python call test is tests/bindings_python.rs).
cargo test -p wakeline-ffi
# Sans-IO rule: no clock reads in src/signaling or src/media outside their test modules
# (src/media/audio is the I/O edge: its paced file/tone backends keep real time; a tests.rs file is
# a test module throughout).
clock=$(for f in $(find src/signaling src/media -name '*.rs' -not -name tests.rs -not -path 'src/media/audio/*'); do
  awk -v f="$f" '/#\[cfg\(test\)\]/{exit} /Instant::now\(\)/{print f": "$0}' "$f"
done)
if [ -n "$clock" ]; then
  echo "clock read in a sans-IO core (pass 'now' in instead):"; echo "$clock"; exit 1
fi
cargo test
# Fuzzing (tests/fuzz.rs): `cargo test` above gave each target 2 s; here each gets 30 s,
# optimised, and the black-box target feeds the release `wakeline listen` mutated SIP over TCP
# for 60 s. A failure prints the shrunk input and WAKELINE_FUZZ_SEED to replay it.
WAKELINE_FUZZ_SECS=30 WAKELINE_BLACKBOX_SECS=60 cargo test --release --test fuzz
