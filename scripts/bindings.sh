#!/usr/bin/env bash
# Builds the wakeline-ffi library (ffi/) and generates its Swift, Kotlin and Python bindings with
# UniFFI's library mode into target/bindings/{swift,kotlin,python}. The Python directory also gets
# the shared library, so `PYTHONPATH=target/bindings/python python3 -c 'import wakeline_ffi'` works.
#
#   scripts/bindings.sh            release build
#   scripts/bindings.sh --debug    debug build (faster to build; what the tests use)
#
# Swift and Kotlin are generated only: compiling them needs swiftc / kotlinc and JNA, which the
# package registries here do not provide.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
flags=(--release)
if [[ "${1:-}" == "--debug" ]]; then
    profile=debug
    flags=()
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
case "$(uname -s)" in
    Darwin) lib="libwakeline_ffi.dylib" ;;
    *) lib="libwakeline_ffi.so" ;;
esac

# One build for the library and the generator (the same features, so neither rebuilds the other).
cargo build -p wakeline-ffi --features bindgen "${flags[@]}"
bindgen="$target_dir/$profile/uniffi-bindgen"
library="$target_dir/$profile/$lib"
out="$target_dir/bindings"

for language in python swift kotlin; do
    rm -rf "${out:?}/$language"
    mkdir -p "$out/$language"
    # --no-format: the formatters (swiftformat, ktlint) are not installed here.
    "$bindgen" generate --library "$library" --language "$language" --no-format --out-dir "$out/$language"
done
cp "$library" "$out/python/"
echo "bindings: $out/{swift,kotlin,python} (library: $library)"
