#!/usr/bin/env bash
# bench/cost/stages.sh [DIR] [SCENARIO...]: the decision core's instructions per /token
# request, taken apart by pipeline stage, counted by valgrind's callgrind (repeatable: the
# same binary and input give the same counts whatever else the machine does).
#
# DIR is a checkout of this repository (default: the one this script is in), so that two
# builds can be set side by side: `git worktree add /tmp/old REV && bench/cost/stages.sh /tmp/old`.
# SCENARIO: es256, dpop-es256 (default both), password, refresh. The cost tool
# (registry-token-cost) runs the bench's requests through the core with a Crypto that
# accepts every signature, so the counts are the filter's own work, signatures aside.
# Built natively with symbols and without LTO, in its own target directory; SHA-256 runs
# its portable code under callgrind (no SHA extensions), as it does in the Wasm module.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$here}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(es256 dpop-es256)
command -v valgrind >/dev/null || { echo "valgrind is required (Debian package valgrind)" >&2; exit 1; }
target=${STAGES_TARGET_DIR:-$dir/target/stages}
(cd "$dir" && CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=1 \
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo build -q --release -p registry-token-cost --target-dir "$target")
requests=2000 rounds=7 # the cost tool runs `requests` requests `rounds` times
for s in "${scenarios[@]}"; do
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$target/release/registry-token-cost" "$s" "$requests" >/dev/null 2>&1
  echo "$s ($(cd "$dir" && git rev-parse --short HEAD)): instructions per request"
  # Inclusive counts per stage function (the largest entry of each: inlined copies are
  # listed under their callers too).
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk -v n=$((requests * rounds)) '
    BEGIN {
      split("handler/pipeline.rs:registry_token_core::handler::pipeline::handle_token|handler/credentials.rs:registry_token_core::handler::credentials::read_request|pipeline/trust.rs:registry_token_core::handler::pipeline::trust::verify_caller|handler/pipeline.rs:registry_token_core::handler::pipeline::sender_constraint|policy/plan/mod.rs:registry_token_core::policy::plan::Catalogue::grant_for|pipeline/issue.rs:registry_token_core::handler::pipeline::issue::mint|handler/audit.rs:registry_token_core::handler::audit::Audit::to_line", pat, "|")
      split("the decision (handle_token)|1 credentials (read_request)|2 OpToken (verify_caller)|3 sender constraint|4 policy (Catalogue::grant_for)|5 mint and reply (issue::mint)|audit line (to_line, after it)", name, "|")
    }
    {
      v = $1; gsub(",", "", v)
      for (i in pat) if (index($0, pat[i]) && v + 0 > best[i] + 0) best[i] = v
    }
    END {
      for (i = 1; i <= 7; i++) printf "  %-38s %8.1fk\n", name[i], best[i] / n / 1000
    }'
  rm -f "$out"
done
