#!/bin/sh
# Measures the whole pipeline as examples/watch runs it, on real loopback
# sockets held open by sockhold (default: 10,000 and 100,000 sockets over
# 100 processes):
#   - the first run of the five programs in one pipeline, beside sockdump
#     alone (wall time, and their ratio), and each stage's peak RSS;
#   - each filter alone, fed the saved output of the stage before it: MB/s
#     of input, CPU and peak RSS; sockdiff --state with every connection
#     known (a cron run): peak RSS a connection;
#   - cron style: watch --once, first run (every socket is new: one
#     document each) and second run (nothing changed), wall time and CPU;
#   - streaming: the CPU that watch 1s costs per period once every socket
#     is known (CPU of 11 dumps minus CPU of 1, over 10 periods), and the
#     peak RSS of the largest stage;
#   - for scale, ss -tanp (one dump with processes, what a poll of the
#     original costs: it walks every process's fds on every poll).
#
#   examples/bench/watch.sh [RUNS]     (default 3)
#
# Run as root. Needs Go, iproute2 (ss) and GNU time. WATCH_BENCH="N:PROCS
# ..." overrides the populations. Reverse lookups are off (no DNS).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
RUNS=${1:-3}
POPS=${WATCH_BENCH:-"10000:100 100000:100"}
[ "$(id -u)" = 0 ] || echo "bench: not root: sockproc sees only this user's processes" >&2
bench_init
WATCH="$ROOT/examples/watch"
export SOCKPIPE_BIN="$BIN"

# cpu_ms CMD: user+system CPU of CMD and everything it waited for, in ms.
cpu_ms() {
	/usr/bin/time -f "%U %S %M" -o "$BENCH_TMP/t" sh -c "exec $1" || die "command failed: $1"
	tail -n 1 "$BENCH_TMP/t" | awk '{printf "%d\n", ($1 + $2) * 1000}'
}

for pop in $POPS; do
	n=${pop%%:*}; procs=${pop#*:}
	wait_time_wait
	hold_start "$n" "$procs"
	total=$(ss -tanH | wc -l)
	echo "== $n sockets over $procs processes (sockets in the namespace: $total)"

	# The first run of the whole pipeline, every socket a document, beside
	# sockdump alone, and each stage's peak RSS (reverse lookups on, from
	# /etc/hosts and the system's resolvers).
	dump=$(median_ms "$RUNS" "'$BIN/sockdump' >/dev/null")
	pipe="'$BIN/sockdump'"
	for st in sockdiff sockproc sockresolve sockecs; do
		pipe="$pipe | /usr/bin/time -f %M -o '$BENCH_TMP/rss.$st' '$BIN/$st'"
	done
	whole=$(median_ms "$RUNS" "$pipe >/dev/null")
	rss=""
	for st in sockdiff sockproc sockresolve sockecs; do
		rss="$rss $st $(awk '{print int($1 / 1024)}' "$BENCH_TMP/rss.$st") MiB,"
	done
	echo "first run, sockdump | sockdiff | sockproc | sockresolve | sockecs: ${whole} ms median of $RUNS; sockdump alone ${dump} ms: $(awk -v a="$whole" -v b="$dump" 'BEGIN {printf "%.1f", a / b}') times; peak RSS:${rss%,}"

	# Each filter alone, fed the saved output of the stage before it:
	# wall time, MB/s of input, CPU and peak RSS.
	"$BIN/sockdump" >"$BENCH_TMP/in.sockdiff"
	prev=sockdiff
	for st in sockproc sockresolve sockecs; do
		"$BIN/$prev" <"$BENCH_TMP/in.$prev" >"$BENCH_TMP/in.$st"
		prev=$st
	done
	for st in sockdiff sockproc sockresolve sockecs; do
		size=$(wc -c <"$BENCH_TMP/in.$st")
		ms=$(median_ms "$RUNS" "'$BIN/$st' <'$BENCH_TMP/in.$st' >/dev/null")
		/usr/bin/time -f "%U %S %M" -o "$BENCH_TMP/t" "$BIN/$st" <"$BENCH_TMP/in.$st" >/dev/null
		awk -v st="$st" -v size="$size" -v ms="$ms" '{printf "%s alone: %.1f MB in %s ms median of '"$RUNS"': %.0f MB/s of input; %d ms CPU, peak RSS %d MiB\n", st, size / 1e6, ms, size / 1e3 / ms, ($1 + $2) * 1000, $3 / 1024}' "$BENCH_TMP/t"
	done
	# sockdiff as cron runs it, once its state file knows every
	# connection: load, compare, save; peak RSS a connection.
	"$BIN/sockdiff" --state "$BENCH_TMP/diff.state" <"$BENCH_TMP/in.sockdiff" >/dev/null
	ms=$(median_ms "$RUNS" "'$BIN/sockdiff' --state '$BENCH_TMP/diff.state' <'$BENCH_TMP/in.sockdiff' >/dev/null")
	/usr/bin/time -f "%U %S %M" -o "$BENCH_TMP/t" "$BIN/sockdiff" --state "$BENCH_TMP/diff.state" <"$BENCH_TMP/in.sockdiff" >/dev/null
	awk -v ms="$ms" -v n="$total" '{printf "sockdiff --state, every connection known: %s ms median of '"$RUNS"'; %d ms CPU, peak RSS %d MiB, %.0f bytes a connection\n", ms, ($1 + $2) * 1000, $3 / 1024, $3 * 1024 / n}' "$BENCH_TMP/t"
	rm -f "$BENCH_TMP"/in.* "$BENCH_TMP/diff.state"

	# Cron style.
	first=$(median_ms "$RUNS" "rm -rf '$BENCH_TMP/state'; '$WATCH' --once --state-dir '$BENCH_TMP/state' >/dev/null")
	docs=$("$WATCH" --once --state-dir "$BENCH_TMP/docs-state" | wc -l)
	second=$(median_ms "$RUNS" "'$WATCH' --once --state-dir '$BENCH_TMP/state' >/dev/null")
	echo "watch --once, first run:  ${first} ms median of $RUNS ($docs documents)"
	echo "watch --once, next runs:  ${second} ms median of $RUNS"

	# Streaming: CPU per period once every socket is known.
	c1=$(cpu_ms "'$WATCH' 1s --count 1 --no-events >/dev/null")
	c11=$(cpu_ms "'$WATCH' 1s --count 11 --no-events >/dev/null")
	rss=$(tail -n 1 "$BENCH_TMP/t" | awk '{print int($3 / 1024)}')
	per=$(awk -v a="$c1" -v b="$c11" 'BEGIN {printf "%.1f", (b - a) / 10}')
	echo "watch 1s: first period ${c1} ms CPU; then ${per} ms CPU per period ($(awk -v p="$per" 'BEGIN {printf "%.1f", p / 10}')% of one core); largest stage peak RSS ${rss} MiB"

	ss -tanp >/dev/null
	theirs=$(median_ms "$RUNS" "ss -tanp >/dev/null")
	echo "ss -tanp: ${theirs} ms median of $RUNS"
	hold_stop
done
