#!/usr/bin/env bash
# The soak and the fault suite (issue 11 §8), with the builds they need. Not part of CI: the soak takes 30 minutes and
# both load the machine. See docs/reliability.md.
#
#   bench/soak.sh                 # both: the 30-minute soak, then the fault suite
#   bench/soak.sh soak [ARGS]     # the soak only, e.g. bench/soak.sh soak --duration 2m (a short validation run)
#   bench/soak.sh faults [ARGS]   # the fault suite only (disk full needs root: it loop-mounts a small ext4 image)
#
# Reports go to $OUT (default /tmp/lattice-soak-<date>), one markdown file per mode. Exit code 0 when every mode run
# passed, 1 when one failed, 2 on a setup problem.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
mode="${1:-all}"
[ $# -gt 0 ] && shift
case "$mode" in
  soak|faults|all) ;;
  *) echo "usage: bench/soak.sh [soak|faults|all] [harness options]" >&2; exit 2 ;;
esac
out="${OUT:-/tmp/lattice-soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

echo "building (Release): the gateway CLI, the stand-in, the harness" >&2
dotnet build -c Release src/Cli/Lattice.Cli >/dev/null
dotnet build -c Release test/Lattice.StandIn.OpenAi >/dev/null
dotnet build -c Release bench/Lattice.Bench >/dev/null
bench=bench/Lattice.Bench/bin/Release/net10.0/Lattice.Bench.dll

status=0
run() {
  local name="$1"; shift
  echo "== $name: dotnet $bench $* --out $out/$name.md" >&2
  dotnet "$bench" "$@" --out "$out/$name.md" || { rc=$?; [ "$rc" -eq 2 ] && exit 2; status=1; }
}

case "$mode" in
  soak) run soak --soak "$@" ;;
  faults) run faults --faults "$@" ;;
  all) run soak --soak "$@"; run faults --faults ;;
esac
echo "reports in $out" >&2
exit "$status"
