#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/*) and runs each one for a bounded time, one after
# the other (two cores: fuzzers in parallel would only starve each other and the tests).
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (600) each
#   scripts/fuzz.sh FuzzJSON ...     only these targets
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 600)
#   FUZZ_SCRATCH   SwiftPM scratch path of the sanitizer build (default .build/fuzz; it
#                  differs from the normal build's flags, so it has its own)
#   FUZZ_OUT       where crashes, logs and the work corpus go (default $FUZZ_SCRATCH/out)
#
# A target's corpus is Fuzz/corpus/<name> (read, never written: the seeds in the
# repository) plus $FUZZ_OUT/corpus/<target> (what the fuzzer learnt, kept between runs).
# A crash, a timeout (10 s on one input) or an input needing more than 2 GB is written to
# $FUZZ_OUT/crashes/<target>-*; replay it with the normal build's replayer,
# `.build/debug/<target> FILE`, then add it to Fuzz/corpus/<name> and a unit test.
# Exit status: 0 when no target found anything, 1 otherwise (or when a build fails).
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_SCRATCH=${FUZZ_SCRATCH:-.build/fuzz}
FUZZ_OUT=${FUZZ_OUT:-$FUZZ_SCRATCH/out}

# target, seed folder under Fuzz/corpus, largest input (bytes)
all_targets="FuzzJSON:json:16384 FuzzQMP:qmp:16384 FuzzConfig:config:8192 FuzzBillingDate:date:128"
selected=("$@")

mkdir -p "$FUZZ_OUT/crashes" "$FUZZ_OUT/logs"
summary="$FUZZ_OUT/summary.txt"
: >"$summary"
status=0

for entry in $all_targets; do
  IFS=: read -r target seeds max_len <<<"$entry"
  if [ ${#selected[@]} -gt 0 ] && [[ ! " ${selected[*]} " == *" $target "* ]]; then continue; fi

  # Release (what ships) with AddressSanitizer: the JSON parser reads through unsafe
  # buffer pointers, whose bounds only a debug build checks.
  echo "== building $target (release, -sanitize=fuzzer, address)"
  "$SWIFT" build -c release --scratch-path "$FUZZ_SCRATCH" --product "$target" \
    --sanitize address -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING 2>&1 |
    grep -v -e "ld.gold: warning" -e "^\[" || true
  binary="$FUZZ_SCRATCH/release/$target"
  [ -x "$binary" ] || { echo "$target: build failed" >&2; exit 1; }

  work="$FUZZ_OUT/corpus/$target"
  log="$FUZZ_OUT/logs/$target.log"
  mkdir -p "$work"
  echo "== fuzzing $target for ${FUZZ_SECONDS}s (log: $log)"
  started=$(date +%s)
  set +e
  # detect_leaks=0: the Swift runtime's caches (metadata, interned strings) look like leaks.
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "$binary" \
    -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$FUZZ_OUT/crashes/$target-" \
    "$work" "Fuzz/corpus/$seeds" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(($(date +%s) - started))

  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: ...") and final stats.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  if [ "$rc" -eq 0 ]; then result="ok"; else result="FAILED (rc $rc, see $log and $FUZZ_OUT/crashes/)"; status=1; fi
  line="$target: ${elapsed}s, ${runs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}: $result"
  echo "$line" | tee -a "$summary"
done

echo "== summary ($summary)"
cat "$summary"
exit "$status"
