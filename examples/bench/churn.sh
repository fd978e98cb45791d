#!/bin/sh
# Measures how many short-lived connections reach the pipeline's output, with
# and without kernel destroy notifications, on a host that holds many
# established sockets:
#   - HELD established loopback sockets are held by sockhold;
#   - "sockdump --interval 1s --events | sockdiff --closed | sockproc" runs while the
#     churn generator opens RATE connections a second for SECONDS seconds
#     on loopback, each living 5 ms and closed with RST (no TIME_WAIT twin
#     for a poll to find), and writes a ground-truth log;
#   - the same churn again under plain polling, "sockdump --interval 1s |
#     sockdiff --closed | sockproc".
# A connection is found when an "opened" event (or a "destroyed" record
# that sockdiff passed through) exists for either of its ends; it is owned
# when such an opened event carries, from sockproc, the process (pid, name)
# and the user (uid) that the churn's truth log names. The
# overflows are the sum of the snapshots' event_overflows (ENOBUFS: destroy
# notifications the kernel dropped because sockdump's buffer was full).
#
#   examples/bench/churn.sh [RATE [SECONDS [HELD]]]   (default 1000, 10, 100000)
#
# Run as root: sockdump's --event-buffer (32 MiB) goes beyond
# net.core.rmem_max only with CAP_NET_ADMIN. Needs Go and iproute2 (ss).
# Only loopback is used: the churn listens on 127.0.0.2 and its clients
# bind 127.0.0.3, one explicit port each (20000-60999), so they take no
# ephemeral port from the held sockets. CHURN_OUT=DIR keeps the truth logs
# and outputs in DIR; CHURN_RAW=0 skips the copy of sockdump's own
# non-socket records (used to tell sockdump's losses from sockdiff's);
# CHURN_SOCKDUMP_FLAGS adds flags to both sockdumps (e.g. a smaller
# --event-buffer, to see overflows counted).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
RATE=${1:-1000}
SECONDS_=${2:-10}
HELD=${3:-100000}
PERIOD=1s
BENCH_TMP=$(mktemp -d)
BIN=$BENCH_TMP/bin
OUT=${CHURN_OUT:-$BENCH_TMP/out}
mkdir -p "$OUT"
PIDS=
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	hold_stop
	rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
command -v ss >/dev/null || die "ss not found (apt-get install iproute2)"
[ "$(id -u)" = 0 ] || echo "bench: not root: sockdump's event buffer is capped at net.core.rmem_max ($(cat /proc/sys/net/core/rmem_max) bytes)" >&2
build_all "$BIN"
( cd "$ROOT" && go build -o "$BIN/" ./internal/bench/churn ) || die "build of churn failed"

# wait_drain: wait (at most 90 s) until fewer than 1,000 sockets are in
# TIME_WAIT and none is left on the churn's addresses from an earlier run.
wait_drain() {
	i=0
	while [ $i -lt 90 ]; do
		tw=$(ss -tanH state time-wait | wc -l)
		left=$(ss -tanH src 127.0.0.3 | wc -l)
		[ "$tw" -lt 1000 ] && [ "$left" -eq 0 ] && return 0
		sleep 1; i=$((i + 1))
	done
	echo "bench: still $tw sockets in TIME_WAIT and $left on 127.0.0.3 after 90 s" >&2
}

# measure NAME SOCKDUMP-FLAGS...: run the churn under
# "sockdump --interval 1s FLAGS | sockdiff --closed" and score it.
measure() {
	name=$1; shift
	wait_drain
	rm -f "$BENCH_TMP/dump.fifo" "$BENCH_TMP/raw.fifo"
	mkfifo "$BENCH_TMP/dump.fifo" "$BENCH_TMP/raw.fifo"
	# shellcheck disable=SC2086 # word splitting of the extra flags
	"$BIN/sockdump" --interval "$PERIOD" ${CHURN_SOCKDUMP_FLAGS:-} "$@" >"$BENCH_TMP/dump.fifo" 2>"$OUT/$name.sockdump.err" &
	dump_pid=$!
	if [ "${CHURN_RAW:-1}" = 1 ]; then
		grep -F -v '"type":"socket"' <"$BENCH_TMP/raw.fifo" >"$OUT/$name.raw.ndjson" &
		raw_pid=$!
		tee "$BENCH_TMP/raw.fifo" <"$BENCH_TMP/dump.fifo" | "$BIN/sockdiff" --closed 2>"$OUT/$name.sockdiff.err" |
			"$BIN/sockproc" >"$OUT/$name.ndjson" 2>"$OUT/$name.sockproc.err" &
	else
		raw_pid=
		: >"$OUT/$name.raw.ndjson"
		"$BIN/sockdiff" --closed <"$BENCH_TMP/dump.fifo" 2>"$OUT/$name.sockdiff.err" |
			"$BIN/sockproc" >"$OUT/$name.ndjson" 2>"$OUT/$name.sockproc.err" &
	fi
	diff_pid=$!
	PIDS="$dump_pid $diff_pid $raw_pid"
	# Two snapshots through sockdiff: the held sockets are known, and the
	# pipeline is in its steady state.
	i=0
	while [ "$(grep -c -F '"type":"snapshot"' "$OUT/$name.ndjson" 2>/dev/null || true)" -lt 2 ]; do
		i=$((i + 1)); [ $i -gt 600 ] && die "no two snapshots out of sockdiff after 300 s"
		kill -0 "$diff_pid" 2>/dev/null || die "the pipeline stopped: $(cat "$OUT/$name.sockdump.err" "$OUT/$name.sockdiff.err")"
		sleep 0.5
	done
	"$BIN/churn" -rate "$RATE" -duration "${SECONDS_}s" -log "$OUT/$name.truth" >"$OUT/$name.churn" ||
		die "churn failed"
	# Two more periods: the last connections' dump, and sockdiff's
	# closed events for them.
	sleep 2.5
	kill -TERM "$dump_pid"
	wait "$dump_pid" || echo "bench: sockdump exited with status $?" >&2
	wait "$diff_pid" || echo "bench: sockdiff | sockproc exited with status $?" >&2
	if [ -n "$raw_pid" ]; then wait "$raw_pid" || true; fi
	PIDS=
	"$BIN/churn" -score "$OUT/$name.truth" "$OUT/$name.ndjson" >"$OUT/$name.score" 2>"$OUT/$name.misses" ||
		die "scoring failed"
	if [ "${CHURN_RAW:-1}" = 1 ]; then
		"$BIN/churn" -score -misses 0 "$OUT/$name.truth" "$OUT/$name.raw.ndjson" >"$OUT/$name.raw.score" 2>/dev/null ||
			die "scoring failed"
	fi
}

# field FILE KEY: the value of KEY=value in FILE.
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }

wait_drain
if [ "$HELD" -gt 0 ]; then hold_start "$HELD" 0; fi
sockets=$(ss -tanH | wc -l)
echo "sockets in the namespace: $sockets; churn: $RATE/s for ${SECONDS_} s, 5 ms each, closed with RST; period $PERIOD"

measure events --events
measure polling

for name in events polling; do
	echo "== $name: $(cat "$OUT/$name.churn")"
	echo "   sockdiff output: $(cat "$OUT/$name.score")"
	if [ -s "$OUT/$name.raw.score" ]; then echo "   sockdump output: $(cat "$OUT/$name.raw.score")"; fi
	sed 's/^/   /' "$OUT/$name.misses" "$OUT/$name.sockdump.err" "$OUT/$name.sockdiff.err" "$OUT/$name.sockproc.err"
done

n=$(field "$OUT/events.score" connections)
x=$(field "$OUT/events.score" found)
p=$(field "$OUT/events.score" percent)
k=$(field "$OUT/events.score" overflows)
n2=$(field "$OUT/polling.score" connections)
y=$(field "$OUT/polling.score" found)
q=$(field "$OUT/polling.score" percent)
if [ "$(field "$OUT/events.score" short_lived)" -gt 0 ]; then
	how="sockdiff folds destroyed records into short-lived opened events"
else
	how="sockdiff passes destroyed records through (counted as found)"
fi
echo "events: $x of $n connections ($p%), overflows $k; polling only: $y of $n2 ($q%)"
echo "owners (events): $(field "$OUT/events.score" owned) of $n connections have an opened event whose process and user are those that made them (pid, name, uid) ($(field "$OUT/events.score" owned_percent)% of all, $(field "$OUT/events.score" owned_of_opened_percent)% of those reported); another owner: $(field "$OUT/events.score" owner_wrong)"
echo "($how; connections with two opened events: $(field "$OUT/events.score" double_opened);"
echo " found from the client end alone, as for connections to a remote server: $(field "$OUT/events.score" client_end) of $n;"
echo " server ends reported egress: $(field "$OUT/events.score" server_egress))"
