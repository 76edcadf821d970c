#!/usr/bin/env bash
# Fuzzes the native record codec (scanner and encoders) and CRC32C (native/codec.cc,
# native/crc32c.cc) with libFuzzer + ASan + UBSan.
#
#   scripts/fuzz.sh [seconds] [extra libFuzzer flags...]     (default: 60 seconds)
#
# Builds fuzz/fuzz_decoder (gitignored) when a source is newer, seeds fuzz/seeds/ if it is
# empty, and grows the working corpus in fuzz/corpus/ (gitignored). Runs on one core.
# A crash is written to fuzz/crash-<sha1> (gitignored); reproduce it with
#   fuzz/fuzz_decoder fuzz/crash-<sha1>
# Needs clang with the libFuzzer runtime; on Debian/Ubuntu:
#   sudo apt-get install clang libclang-rt-dev   (or the versioned libclang-rt-NN-dev)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if [ $# -gt 0 ]; then shift; fi
case "$seconds" in
  '' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [seconds] [extra libFuzzer flags...]" >&2
    exit 2
    ;;
esac

CXX="${CXX_FUZZ:-clang++}"
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: $CXX not found (set CXX_FUZZ to pick another clang++)." >&2
  cat >&2 <<'EOF'
Install clang and its libFuzzer runtime, e.g.
  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y clang libclang-rt-dev
                 (on older releases: libclang-rt-14-dev, see `apt-cache search libclang-rt`)
  Fedora:        sudo dnf install clang compiler-rt
  macOS:         brew install llvm   (Apple's clang has no libFuzzer), then
                 CXX_FUZZ=$(brew --prefix llvm)/bin/clang++ scripts/fuzz.sh
EOF
  exit 127
fi

srcs=(native/codec.cc native/crc32c.cc fuzz/fuzz_decoder.cc)
deps=("${srcs[@]}" native/codec.h native/crc32c.h scripts/fuzz.sh)
bin=fuzz/fuzz_decoder
flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

rebuild=0
if [ ! -x "$bin" ]; then rebuild=1; else
  for f in "${deps[@]}"; do [ "$f" -nt "$bin" ] && rebuild=1; done
fi
if [ "$rebuild" = 1 ]; then
  echo "building $bin with $("$CXX" --version | head -1)"
  if ! "$CXX" "${flags[@]}" "${srcs[@]}" -o "$bin"; then
    cat >&2 <<'EOF'
scripts/fuzz.sh: build failed. If the error mentions libclang_rt.fuzzer or
"-fsanitize=fuzzer", the libFuzzer runtime is missing:
  Debian/Ubuntu: sudo apt-get install -y libclang-rt-dev   (or libclang-rt-NN-dev for clang-NN)
EOF
    exit 1
  fi
fi

mkdir -p fuzz/seeds fuzz/corpus
if [ -z "$(ls -A fuzz/seeds)" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$CXX" -std=c++17 -O1 native/codec.cc native/crc32c.cc fuzz/gen_seeds.cc -o "$tmp/gen_seeds"
  "$tmp/gen_seeds" fuzz/seeds
  echo "wrote seeds: $(ls fuzz/seeds | tr '\n' ' ')"
fi

# One process, one core (no -jobs/-workers). New inputs go to fuzz/corpus (the first dir);
# fuzz/seeds is only read. -timeout catches hangs; -max_len bounds input size (the target
# stretches inputs itself to reach the >12 KiB CRC path).
log="$(mktemp)"
status=0
"./$bin" -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 -timeout=10 \
  -artifact_prefix=fuzz/ "$@" fuzz/corpus fuzz/seeds 2>&1 | tee "$log" || status=$?

echo
echo "== fuzz summary (${seconds}s requested) =="
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
grep -E '^stat::' "$log" || true
echo "corpus: $(ls fuzz/corpus | wc -l) files, $(du -sk fuzz/corpus | cut -f1) KiB in fuzz/corpus"
if [ "$status" -ne 0 ]; then
  echo "FUZZER FAILED (exit $status); crash inputs:"
  ls -1 fuzz/crash-* fuzz/leak-* fuzz/timeout-* fuzz/oom-* 2>/dev/null || true
fi
rm -f "$log"
exit "$status"
