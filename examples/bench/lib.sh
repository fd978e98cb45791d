# Shared helpers of the benchmark scripts (POSIX sh). Source it.

# die MESSAGE: print and exit 1.
die() { echo "bench: $*" >&2; exit 1; }

# build_all DIR: build the programs and the socket holder into DIR.
build_all() {
	( cd "$ROOT" && go build -o "$1/" ./cmd/... ./internal/bench/sockhold ) || die "build failed"
}

# hold_start N PROCS: start sockhold with N sockets over PROCS processes,
# wait until they are established, and remember how to stop it.
hold_start() {
	fifo=$BENCH_TMP/hold.in
	rm -f "$fifo"; mkfifo "$fifo"
	"$BIN/sockhold" -n "$1" -procs "$2" <"$fifo" >"$BENCH_TMP/hold.out" &
	HOLD_PID=$!
	exec 9>"$fifo"
	i=0
	while ! grep -q '^ready' "$BENCH_TMP/hold.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 600 ] && die "sockets not established after 300 s"
		kill -0 "$HOLD_PID" 2>/dev/null || die "sockhold failed"
		sleep 0.5
	done
}

hold_stop() {
	exec 9>&-
	[ -n "${HOLD_PID:-}" ] && wait "$HOLD_PID" 2>/dev/null
	HOLD_PID=
}

# now_ns: the monotonic-enough wall clock in nanoseconds.
now_ns() { date +%s%N; }

# median_ms RUNS CMD: run CMD (a shell string) RUNS times, print the median
# wall time in milliseconds with 1 decimal.
median_ms() {
	runs=$1; shift
	: >"$BENCH_TMP/times"
	j=0
	while [ $j -lt "$runs" ]; do
		t0=$(now_ns); sh -c "$1" || die "command failed: $1"; t1=$(now_ns)
		echo $(( (t1 - t0) / 1000 )) >>"$BENCH_TMP/times"
		j=$((j + 1))
	done
	sort -n "$BENCH_TMP/times" | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f\n", m/1000}'
}

# peak_rss_kib CMD: the peak resident set of CMD (a shell string), in KiB.
peak_rss_kib() {
	/usr/bin/time -f %M -o "$BENCH_TMP/rss" sh -c "exec $1" || die "command failed: $1"
	tail -n 1 "$BENCH_TMP/rss"
}

# cpu_ms RUNS CMD: the median CPU time (user + system) of CMD over RUNS
# runs, in milliseconds: steadier than wall time on a busy machine.
cpu_ms() {
	runs=$1; shift
	: >"$BENCH_TMP/cpu"
	j=0
	while [ $j -lt "$runs" ]; do
		/usr/bin/time -f "%U %S" -o "$BENCH_TMP/t" sh -c "exec $1" || die "command failed: $1"
		tail -n 1 "$BENCH_TMP/t" | awk '{printf "%d\n", ($1 + $2) * 1000}' >>"$BENCH_TMP/cpu"
		j=$((j + 1))
	done
	sort -n "$BENCH_TMP/cpu" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# bench_init: the start every benchmark script shares: a temporary
# directory (BENCH_TMP) removed at exit with the socket holder stopped, the
# tools checked, and the programs built into BIN.
bench_init() {
	BENCH_TMP=$(mktemp -d)
	BIN=$BENCH_TMP/bin
	trap 'hold_stop; rm -rf "$BENCH_TMP"' EXIT INT TERM
	command -v ss >/dev/null || die "ss not found (apt-get install iproute2)"
	[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
	build_all "$BIN"
}

# wait_time_wait: wait (at most 90 s) until fewer than 1,000 sockets are in
# TIME_WAIT, such as those that an earlier population left when it closed:
# they would be part of both measurements but of neither population.
wait_time_wait() {
	i=0
	while [ "$(ss -tanH state time-wait | wc -l)" -ge 1000 ] && [ $i -lt 90 ]; do
		sleep 1; i=$((i + 1))
	done
}

# Network namespaces and socket holders inside them (root only).
# netns_add NAME: create the network namespace NAME with its loopback up;
# netns_del_all deletes every one made so. Each is named in BENCH_NETNS.
netns_add() {
	ip netns add "$1" || die "ip netns add $1 failed"
	BENCH_NETNS="${BENCH_NETNS:-} $1"
	ip -n "$1" link set lo up || die "cannot set lo up in $1"
}

netns_del_all() {
	for ns in ${BENCH_NETNS:-}; do
		ip netns del "$ns" 2>/dev/null || echo "bench: could not delete network namespace $ns" >&2
	done
	BENCH_NETNS=
}

# ns_hold_start NS N PROCS: start sockhold with N sockets over PROCS
# processes (0: as few as the descriptor limit allows) inside the network
# namespace NS, without waiting (see ns_hold_wait). Every holder reads the
# same FIFO, whose only writer is this shell's descriptor 8: closing it
# (ns_hold_stop) ends them all.
ns_hold_start() {
	if [ -z "${NS_FIFO:-}" ]; then
		NS_FIFO=$BENCH_TMP/nshold.in
		rm -f "$NS_FIFO"; mkfifo "$NS_FIFO"
		# Read-write: opening does not wait for a reader.
		exec 8<>"$NS_FIFO"
	fi
	rm -f "$BENCH_TMP/nshold.$1.out"
	ip netns exec "$1" "$BIN/sockhold" -n "$2" -procs "$3" \
		<"$NS_FIFO" >"$BENCH_TMP/nshold.$1.out" 8>&- &
	echo $! >"$BENCH_TMP/nshold.$1.pid"
	NS_HOLD_NAMES="${NS_HOLD_NAMES:-} $1"
}

# ns_hold_wait: wait until every holder started by ns_hold_start has its
# sockets established.
ns_hold_wait() {
	i=0
	for ns in ${NS_HOLD_NAMES:-}; do
		while ! grep -q '^ready' "$BENCH_TMP/nshold.$ns.out" 2>/dev/null; do
			i=$((i + 1))
			[ $i -gt 600 ] && die "sockets in $ns not established after 300 s"
			kill -0 "$(cat "$BENCH_TMP/nshold.$ns.pid")" 2>/dev/null || die "the socket holder in $ns failed"
			sleep 0.5
		done
	done
}

# ns_hold_stop: stop every holder started by ns_hold_start and wait for
# them (and so for their sockets to be closed). A holder that is not ready
# yet does not read the FIFO: it and its processes get SIGTERM.
ns_hold_stop() {
	[ -n "${NS_FIFO:-}" ] && exec 8>&-
	NS_FIFO=
	for ns in ${NS_HOLD_NAMES:-}; do
		p=$(cat "$BENCH_TMP/nshold.$ns.pid" 2>/dev/null) || continue
		if ! grep -q '^ready' "$BENCH_TMP/nshold.$ns.out" 2>/dev/null; then
			# shellcheck disable=SC2046 # a list of process ids
			kill -TERM $(pgrep -P "$p") "$p" 2>/dev/null || :
		fi
		wait "$p" 2>/dev/null || :
	done
	NS_HOLD_NAMES=''
}
