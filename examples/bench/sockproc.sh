#!/bin/sh
# Times "sockdump | sockproc" (every socket attributed to its process)
# against "ss -tanp" on the same population of real loopback sockets, for
# 100,000 sockets over 100 processes and 10,000 sockets over 1,000
# processes; then checks the steady state: with no new socket, a poll of
# "sockdump | sockdiff | sockproc" reads no /proc fd directory.
#
#   examples/bench/sockproc.sh [RUNS]     (default 5)
#
# Run as root (sockproc needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to
# see every process, and ss -p too). Needs Go, iproute2 (ss), GNU time,
# and strace for the second steady-state check (skipped without it). Only
# loopback is used. The populations are SOCKPROC_BENCH="N:PROCS ..." to
# override.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
RUNS=${1:-5}
POPS=${SOCKPROC_BENCH:-"10000:1000 100000:100"}
[ "$(id -u)" = 0 ] || echo "bench: not root: sockproc and ss -p see only this user's processes" >&2
bench_init

for pop in $POPS; do
	n=${pop%%:*}; procs=${pop#*:}
	wait_time_wait
	hold_start "$n" "$procs"
	total=$(ss -tanH | wc -l)

	# Attribution: every socket of the holders must get its process.
	"$BIN/sockdump" | "$BIN/sockproc" --stats >"$BENCH_TMP/out" 2>"$BENCH_TMP/err"
	records=$(grep -c '"type":"socket"' "$BENCH_TMP/out")
	attributed=$(grep -c '"process":{' "$BENCH_TMP/out" || true)
	held=$(grep -c '"name":"sockhold"' "$BENCH_TMP/out" || true)
	# Both ends of every connection, plus one listener per holder.
	want=$(( n / 2 * 2 + procs ))
	[ "$held" -ge "$want" ] || die "only $held sockets attributed to the holders, want $want"
	walk=$(grep 'stats: total' "$BENCH_TMP/err" | sed 's/.*sockets=[0-9]* //')

	# Warm up both once, then time them.
	"$BIN/sockdump" | "$BIN/sockproc" >/dev/null; ss -tanp >/dev/null
	ours=$(median_ms "$RUNS" "'$BIN/sockdump' | '$BIN/sockproc' >/dev/null")
	dumponly=$(median_ms "$RUNS" "'$BIN/sockdump' >/dev/null")
	theirs=$(median_ms "$RUNS" "ss -tanp >/dev/null")
	rss=$("$BIN/sockdump" >"$BENCH_TMP/dump"; peak_rss_kib "'$BIN/sockproc' <'$BENCH_TMP/dump' >/dev/null")
	ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.3f", a/b}')

	echo "== $n sockets over $procs processes (sockets in the namespace: $total)"
	echo "attributed: $attributed of $records socket records; $held to the holders (want >= $want)"
	echo "one walk: $walk"
	echo "sockdump | sockproc: ${ours} ms median of $RUNS (sockdump alone ${dumponly} ms), sockproc peak RSS $((rss / 1024)) MiB"
	echo "ss -tanp:            ${theirs} ms median of $RUNS"
	echo "ratio (sockdump | sockproc) / ss -tanp: $ratio"

	# Steady state, streaming: after the first snapshot nothing is new, so
	# no snapshot after it may read a /proc fd directory. Other activity on
	# the host (new connections) shows as walks: the lines are printed.
	"$BIN/sockdump" --interval 1s --count 5 | "$BIN/sockdiff" | "$BIN/sockproc" --stats >/dev/null 2>"$BENCH_TMP/steady"
	echo "steady state, streaming (sockdump --interval 1s --count 5 | sockdiff | sockproc --stats):"
	grep 'stats: snapshot' "$BENCH_TMP/steady" | sed 's/^/  /'
	later=$(grep 'stats: snapshot' "$BENCH_TMP/steady" | tail -n +2 | grep -c -v 'fd_dirs=0 ' || true)
	echo "  snapshots after the first that read an fd directory: $later"

	# Steady state, cron: a poll against a state file that already knows
	# every socket; strace counts every open of a /proc/PID/fd directory.
	if command -v strace >/dev/null; then
		"$BIN/sockdump" | "$BIN/sockdiff" --state "$BENCH_TMP/state" >/dev/null
		"$BIN/sockdump" | "$BIN/sockdiff" --state "$BENCH_TMP/state" >"$BENCH_TMP/new"
		strace -f -qq -e trace=openat,open -o "$BENCH_TMP/trace" "$BIN/sockproc" <"$BENCH_TMP/new" >/dev/null 2>&1
		opens=$(grep -c '/fd"' "$BENCH_TMP/trace" || true)
		echo "steady state, cron (sockdump | sockdiff --state F | strace sockproc): $(grep -c '"type":"socket"' "$BENCH_TMP/new" || true) new sockets, $opens opens of /proc/PID/fd"
	fi
	hold_stop
done
