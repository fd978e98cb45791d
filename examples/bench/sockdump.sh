#!/bin/sh
# Times "sockdump >/dev/null" against "ss -tan >/dev/null" on the same
# population of real loopback sockets, and reports the ratio and
# sockdump's peak RSS.
#
#   examples/bench/sockdump.sh [SOCKETS [RUNS]]     (default 100000 and 15)
#
# Needs Go, iproute2 (ss) and GNU time (/usr/bin/time); run as any user
# whose descriptor limit is at least 20,000 (the holders spread the sockets
# over processes of at most 16,000 each). Only loopback is used.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
N=${1:-100000}
RUNS=${2:-15}
bench_init
wait_time_wait
hold_start "$N" 0
total=$(ss -tanH | wc -l)
# Warm up both once, then alternate.
"$BIN/sockdump" >/dev/null; ss -tan >/dev/null
ours=$(median_ms "$RUNS" "'$BIN/sockdump' >/dev/null")
theirs=$(median_ms "$RUNS" "ss -tan >/dev/null")
ours_cpu=$(cpu_ms "$RUNS" "'$BIN/sockdump' >/dev/null")
theirs_cpu=$(cpu_ms "$RUNS" "ss -tan >/dev/null")
rss=$(peak_rss_kib "'$BIN/sockdump' >/dev/null")
lines=$("$BIN/sockdump" | wc -l)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", a/b}')
echo "sockets in the namespace: $total (sockdump wrote $lines lines)"
cpu_ratio=$(awk -v a="$ours_cpu" -v b="$theirs_cpu" 'BEGIN {printf "%.2f", a/b}')
echo "sockdump: ${ours} ms wall, ${ours_cpu} ms CPU (medians of $RUNS), peak RSS $((rss / 1024)) MiB"
echo "ss -tan:  ${theirs} ms wall, ${theirs_cpu} ms CPU (medians of $RUNS)"
echo "ratio sockdump/ss: $ratio wall, $cpu_ratio CPU"
