#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...]
#
# Runs every fuzz target of fuzz/ (or the TARGETs given) for SECONDS each (default 60),
# one after the other, one job each (-jobs=1 -workers=1: the test machines are shared).
# Installs cargo-fuzz (`cargo install cargo-fuzz`, into ~/.cargo/bin) when missing and
# builds with the nightly toolchain (`cargo +nightly fuzz`, AddressSanitizer). A crash,
# a timeout (-timeout, 10 s for one input), RSS over -rss_limit_mb or one allocation over
# -malloc_limit_mb (a small multiple of the largest input, -max_len 64 KiB) fails the run:
# the input is saved under fuzz/artifacts/TARGET/ and the script exits non-zero after
# the other targets ran. Corpora live in fuzz/corpus/TARGET (seeded by
# deploy/dev/fuzz-corpus.sh; new inputs the fuzzer finds are added there, keep them small:
# `cargo +nightly fuzz cmin TARGET` shrinks one). Prints executions and corpus size per
# target. Scratch files of backup_segment go to $TMPDIR (default /dev/shm).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-60}; shift || true
TARGETS=("$@")
export PATH=$HOME/.cargo/bin:$PATH
export TMPDIR=${TMPDIR:-/dev/shm}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz || exit 1
cd "$ROOT/fuzz" || exit 1
[[ ${#TARGETS[@]} -gt 0 ]] || mapfile -t TARGETS < <(cargo +nightly fuzz list)
cargo +nightly fuzz build || exit 1
FAILED=()
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  LOG=$(mktemp)
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -jobs=1 -workers=1 \
    -max_len=65536 -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 \
    >"$LOG" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -1)
  printf '%-16s rc=%s executions=%s corpus=%s files, %s\n' "$t" "$rc" "${execs:-?}" \
    "$(find "corpus/$t" -type f | wc -l)" "$(du -sh "corpus/$t" | cut -f1)"
  if [[ $rc -ne 0 ]]; then
    FAILED+=("$t"); grep -E "ERROR|panicked|SUMMARY|Test unit written" "$LOG" | head -8
  fi
  rm -f "$LOG"
done
rm -rf "$TMPDIR"/rowstream-fuzz-*
[[ ${#FAILED[@]} -eq 0 ]] || { echo "FAILED: ${FAILED[*]}"; exit 1; }
