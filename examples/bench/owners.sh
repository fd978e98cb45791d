#!/bin/sh
# Measures what sockdump's owner table (sockdump --events, eBPF) costs:
#   - the hook's cost per connection: loopback TCP connect, accept, a byte
#     each way and close (RST), one connection at a time, with the table
#     loaded and without, alternating RUNS times in one run (the benchmark
#     BenchmarkConnectAcceptClose of internal/ownertable);
#   - the steady-state CPU of the pipeline, "watch 1s" (events on) once
#     every socket is known, beside HELD sockets, with the table and with
#     --no-owners, alternating: the CPU of 11 dumps minus that of 1, over
#     10 periods.
#
#   examples/bench/owners.sh [RUNS [HELD]]   (default 5, 100000)
#
# Run as root (the table loads BPF programs). Needs Go, iproute2 (ss) and
# GNU time.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
RUNS=${1:-5}
HELD=${2:-100000}
[ "$(id -u)" = 0 ] || die "run as root: the owner table loads BPF programs"
bench_init
( cd "$ROOT" && go test -c -o "$BIN/ownertable.test" ./internal/ownertable ) || die "build of the benchmark failed"
WATCH="$ROOT/examples/watch"
export SOCKPIPE_BIN="$BIN"

# bench_ns on|off: ns per connection of one benchmark run; with the table,
# the hooks' own ns per connection (the kernel's BPF statistics) go to
# $BENCH_TMP/hook.
bench_ns() {
	"$BIN/ownertable.test" -test.run '^$' -test.bench "ConnectAcceptClose/table=$1\$" -test.benchtime 2s >"$BENCH_TMP/b.out"
	awk '$1 ~ /^BenchmarkConnectAcceptClose/ {for (i = 1; i < NF; i++) if ($(i+1) == "hook-ns/op") print int($i)}' "$BENCH_TMP/b.out" >>"$BENCH_TMP/hook"
	awk '$1 ~ /^BenchmarkConnectAcceptClose/ {print int($3)}' "$BENCH_TMP/b.out"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$BENCH_TMP/off"; : >"$BENCH_TMP/on"; : >"$BENCH_TMP/hook"
j=0
while [ $j -lt "$RUNS" ]; do
	bench_ns off >>"$BENCH_TMP/off"
	bench_ns on >>"$BENCH_TMP/on"
	j=$((j + 1))
done
off=$(median <"$BENCH_TMP/off"); on=$(median <"$BENCH_TMP/on")
if [ -z "$off" ] || [ -z "$on" ]; then die "the benchmark printed no result"; fi
echo "connect/accept/close on loopback, median of $RUNS each, alternating:"
echo "  table off: $off ns per connection ($(awk -v n="$off" 'BEGIN {printf "%.0f", 1e9 / n}')/s)"
echo "  table on:  $on ns per connection ($(awk -v n="$on" 'BEGIN {printf "%.0f", 1e9 / n}')/s)"
echo "  throughput with the table: $(awk -v a="$off" -v b="$on" 'BEGIN {printf "%.3f", a / b}') of without"
hook=$(median <"$BENCH_TMP/hook")
if [ -n "$hook" ]; then
	echo "  the hooks' own run time: $hook ns per connection ($(awk -v h="$hook" -v n="$off" 'BEGIN {printf "%.1f", 100 * h / n}')% of a connection without the table)"
fi

# cpu MS-FILE ARGS...: append the user+system CPU of watch ARGS, in ms.
cpu() {
	f=$1; shift
	/usr/bin/time -f "%U %S" -o "$BENCH_TMP/t" "$WATCH" "$@" >/dev/null 2>>"$BENCH_TMP/watch.err" || die "watch $* failed: $(cat "$BENCH_TMP/watch.err")"
	tail -n 1 "$BENCH_TMP/t" | awk '{printf "%d\n", ($1 + $2) * 1000}' >>"$f"
}

if [ "$HELD" -gt 0 ]; then hold_start "$HELD" 100; fi
echo "steady state, watch 1s with events, $(ss -tanH | wc -l) sockets in the namespace:"
for m in on1 on11 off1 off11; do : >"$BENCH_TMP/$m"; done
j=0
while [ $j -lt "$RUNS" ]; do
	cpu "$BENCH_TMP/on1" 1s --count 1
	cpu "$BENCH_TMP/on11" 1s --count 11
	cpu "$BENCH_TMP/off1" 1s --count 1 --no-owners
	cpu "$BENCH_TMP/off11" 1s --count 11 --no-owners
	j=$((j + 1))
done
for m in on off; do
	a=$(median <"$BENCH_TMP/${m}1"); b=$(median <"$BENCH_TMP/${m}11")
	echo "  table $m: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", (b - a) / 10}') ms CPU per period (first period $a ms), median of $RUNS"
done
hold_stop
