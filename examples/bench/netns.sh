#!/bin/sh
# Times "sockdump --all-netns" on a host of many network namespaces against
# a dump of as many sockets in one namespace, and shows how the cost grows
# with the number of namespaces.
#
#   sudo examples/bench/netns.sh [RUNS [PER_NS [NAMESPACES]]]
#                                (default 11 runs, 5000 sockets, 20)
#
# In one run, with one sockdump binary and the medians of RUNS runs (wall
# time and CPU time, user + system):
#   a) PER_NS x NAMESPACES sockets (100,000) in one new namespace, dumped
#      with --netns /run/netns/NAME, then with --all-netns (the host's own
#      sockets included),
#   b) NAMESPACES namespaces of PER_NS sockets each, with --all-netns,
#   c) the same with a quarter and half as many namespaces, and none: the
#      cost per socket at each size,
# then the ratios b/a. Every dump's records are counted against the
# sockets that ss sees in each namespace.
#
# With SOCKPIPE_BENCH_PROFILE=DIR, it also profiles a) and b): the Go
# benchmarks BenchmarkRunNetNS and BenchmarkRunAllNetNS of internal/sockdump
# with -cpuprofile (DIR/a.prof, DIR/b.prof: go tool pprof -top DIR/b.prof),
# and, when perf is installed, 10 sockdump runs with perf record
# (DIR/a.perf.txt, DIR/b.perf.txt: the kernel's share too).
#
# Why the cost may grow faster than the sockets: the kernel answers a dump
# of one namespace by walking tables shared by all namespaces of the host,
# skipping the sockets of the others: the established-socket table (unless
# net.ipv4.tcp_child_ehash_entries gave the namespace its own), once per
# request (sockdump asks for IPv4 and IPv6 apart), and for the state
# bound-inactive (Linux 6.5+) the table of bound ports. So each
# namespace's dump costs as much as the host's sockets, and n namespaces
# n times that.
#
# SOCKPIPE_BENCH_SOCKDUMP=PATH times that sockdump binary instead of one
# built from this tree (to compare a change). SOCKPIPE_BENCH_CHILD_EHASH=N
# sets net.ipv4.tcp_child_ehash_entries to N (Linux 6.1+) while the script
# creates its namespaces, so that each gets its own established-socket
# table of N buckets, and restores it at exit.
#
# Needs root (ip netns, and sockdump entering the namespaces), Go,
# iproute2 and GNU time (/usr/bin/time), and a descriptor limit of at least
# 20,000. The namespaces are named sockpipe-bench-PID-I and deleted at exit,
# also on failure or Ctrl-C. Only loopback is used, inside them. Runs under
# flock /tmp/sockpipe-heavy.lock, so that heavy benchmarks do not overlap;
# it takes about 3 minutes on 2 cores (4 with SOCKPIPE_BENCH_PROFILE).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/examples/bench/lib.sh"
RUNS=${1:-11}
PER=${2:-5000}
NNS=${3:-20}
LOCK=/tmp/sockpipe-heavy.lock

[ "$(id -u)" -eq 0 ] || die "needs root: sudo $0"
command -v ip >/dev/null || die "ip not found (apt-get install iproute2)"
if [ -z "${SOCKPIPE_BENCH_LOCKED:-}" ]; then
	command -v flock >/dev/null || die "flock not found (apt-get install util-linux)"
	exec flock "$LOCK" env SOCKPIPE_BENCH_LOCKED=1 sh "$0" "$@"
fi

PROFILE=${SOCKPIPE_BENCH_PROFILE:-}
EHASH=${SOCKPIPE_BENCH_CHILD_EHASH:-}
old_ehash=
bench_init
SOCKDUMP=${SOCKPIPE_BENCH_SOCKDUMP:-$BIN/sockdump}
[ -x "$SOCKDUMP" ] || die "$SOCKDUMP is not an executable"
if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE"
	PROFILE=$(cd "$PROFILE" && pwd)
	(cd "$ROOT" && go test -c -o "$BIN/sockdump.test" ./internal/sockdump) || die "go test -c failed"
fi
cleanup() {
	set +e
	ns_hold_stop
	netns_del_all
	[ -z "$old_ehash" ] || sysctl -qw net.ipv4.tcp_child_ehash_entries="$old_ehash"
	rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "$EHASH" ]; then
	old_ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null) ||
		die "no net.ipv4.tcp_child_ehash_entries in this kernel (Linux 6.1+)"
	sysctl -qw net.ipv4.tcp_child_ehash_entries="$EHASH" || die "cannot set net.ipv4.tcp_child_ehash_entries"
fi

# tcp_objects: the TCP sockets of every namespace, TIME_WAIT included, as
# the slab allocator counts them.
tcp_objects() {
	awk '$1 == "TCP" || $1 == "TCPv6" || $1 == "tw_sock_TCP" || $1 == "tw_sock_TCPv6" {n += $2} END {print n + 0}' /proc/slabinfo
}

# wait_freed BASE: wait (at most 60 s) until the sockets of deleted
# namespaces are freed (the kernel purges them in the background): every
# dump of any namespace walks the kernel's one table of all of them.
wait_freed() {
	i=0
	while [ "$(tcp_objects)" -gt $(($1 + 2000)) ] && [ $i -lt 60 ]; do
		sleep 1; i=$((i + 1))
	done
	[ $i -lt 60 ] || echo "bench: $(tcp_objects) TCP sockets still allocated host-wide (was $1 at start)" >&2
}

# check OUT EXPECT_NAMESPACES NS...: check sockdump's output OUT: its
# snapshot record counts every socket record, with --all-netns at least
# EXPECT_NAMESPACES namespaces, and each namespace NS has as many records
# as ss sees sockets in it. Prints "SOCKETS NAMESPACES".
check() {
	out=$1 wantns=$2; shift 2
	awk '
		/"type":"socket"/ { n++; if (match($0, /"netns":[0-9]+/)) c[substr($0, RSTART + 8, RLENGTH - 8)]++ }
		/"type":"snapshot"/ {
			s = 0; k = 0
			if (match($0, /"sockets":[0-9]+/)) s = substr($0, RSTART + 10, RLENGTH - 10)
			if (match($0, /"namespaces":[0-9]+/)) k = substr($0, RSTART + 13, RLENGTH - 13)
			printf "snapshot %d %d %d\n", s, k, n
		}
		END { for (i in c) print i, c[i] }
	' "$out" >"$BENCH_TMP/counts"
	read -r _ sockets namespaces records <<EOF
$(grep '^snapshot ' "$BENCH_TMP/counts")
EOF
	[ "${sockets:-x}" = "${records:-y}" ] || die "snapshot says ${sockets:-?} sockets, ${records:-?} records written"
	[ "$namespaces" -ge "$wantns" ] || die "snapshot says $namespaces namespaces, want $wantns or more"
	for ns in "$@"; do
		ino=$(stat -L -c %i "/run/netns/$ns")
		held=$(ip netns exec "$ns" ss -tanH | wc -l)
		got=$(awk -v i="$ino" '$1 == i {print $2}' "$BENCH_TMP/counts")
		[ "${got:-0}" -eq "$held" ] || die "$ns (net:[$ino]): ${got:-0} records, ss sees $held sockets"
	done
	echo "$sockets $namespaces"
}

# measure LABEL FLAGS EXPECT_NAMESPACES NS...: check one dump, time RUNS
# more, add a row to the table and set WALL and CPU.
measure() {
	label=$1 flags=$2 wantns=$3; shift 3
	# shellcheck disable=SC2086 # FLAGS is a list of flags
	"$SOCKDUMP" $flags >"$BENCH_TMP/dump" 2>>"$BENCH_TMP/stderr" || die "sockdump $flags failed"
	counted=$(check "$BENCH_TMP/dump" "$wantns" "$@")
	sockets=${counted% *} namespaces=${counted#* }
	WALL=$(median_ms "$RUNS" "'$SOCKDUMP' $flags >/dev/null 2>&1")
	CPU=$(cpu_ms "$RUNS" "'$SOCKDUMP' $flags >/dev/null 2>&1")
	awk -v l="$label" -v k="$namespaces" -v s="$sockets" -v w="$WALL" -v c="$CPU" 'BEGIN {
		printf "%-34s %5d %8d %9.1f %8d %8.2f %8.2f\n", l, k, s, w, c, w * 1000 / s, c * 1000 / s
	}' >>"$BENCH_TMP/table"
	echo "$sockets" >"$BENCH_TMP/last.sockets"
}

# profile NAME BENCH FLAGS [NETNS]: with SOCKPIPE_BENCH_PROFILE, profile
# the Go benchmark BENCH (given SOCKPIPE_BENCH_NETNS=NETNS) and 10 runs of
# "sockdump FLAGS" into $PROFILE/NAME.*.
profile() {
	[ -n "$PROFILE" ] || return 0
	(cd "$PROFILE" && SOCKPIPE_BENCH_NETNS=${4:-} "$BIN/sockdump.test" -test.run '^$' -test.bench "^Benchmark$2\$" \
		-test.benchtime 20x -test.cpuprofile "$1.prof") >"$PROFILE/$1.bench.txt" 2>&1 ||
		die "profiling $2 failed: see $PROFILE/$1.bench.txt"
	command -v perf >/dev/null || return 0
	if ! perf record -q -g -o "$PROFILE/$1.perf.data" -- sh -c \
		"for i in 1 2 3 4 5 6 7 8 9 10; do '$SOCKDUMP' $3 >/dev/null 2>&1; done" 2>"$PROFILE/$1.perf.txt"; then
		echo "bench: perf record failed (see $PROFILE/$1.perf.txt); no perf profile" >&2
		return 0
	fi
	perf report -i "$PROFILE/$1.perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
		grep -v '^$' | grep -v '^#' | grep '%' | head -40 >"$PROFILE/$1.perf.txt"
}

base=$(tcp_objects)
total=$((PER * NNS))
echo "sockdump --all-netns: $NNS namespaces x $PER sockets against $total in one; medians of $RUNS runs" \
	"on Linux $(uname -r), $(nproc) CPUs; net.ipv4.tcp_child_ehash_entries=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null || echo none)" >&2

# The host alone: what every --all-netns dump costs besides the sockets.
"$SOCKDUMP" --all-netns >/dev/null 2>&1
measure "host only, --all-netns" --all-netns 1

# a) every socket in one namespace.
one=sockpipe-bench-$$-0
netns_add "$one"
ns_hold_start "$one" "$total" 0
ns_hold_wait
"$SOCKDUMP" --netns "/run/netns/$one" >/dev/null 2>&1
measure "a) 1 x $total, --netns" "--netns /run/netns/$one" 0 "$one"
a_wall=$WALL a_cpu=$CPU a_sockets=$(cat "$BENCH_TMP/last.sockets")
profile a RunNetNS "--netns /run/netns/$one" "/run/netns/$one"
measure "a) 1 x $total, --all-netns" --all-netns 2 "$one"
ns_hold_stop
netns_del_all
wait_freed "$base"

# c) then b): NNS/4, NNS/2, then NNS namespaces of PER sockets each.
names=
have=0
for k in $((NNS / 4)) $((NNS / 2)) "$NNS"; do
	[ "$k" -gt "$have" ] || continue
	while [ "$have" -lt "$k" ]; do
		have=$((have + 1))
		name=sockpipe-bench-$$-$have
		netns_add "$name"
		ns_hold_start "$name" "$PER" 0
		names="$names $name"
	done
	ns_hold_wait
	"$SOCKDUMP" --all-netns >/dev/null 2>&1
	# shellcheck disable=SC2086 # names is a list
	measure "$([ "$k" -eq "$NNS" ] && echo "b) " || echo "c) ")$k x $PER, --all-netns" --all-netns $((k + 1)) $names
done
b_wall=$WALL b_cpu=$CPU b_sockets=$(cat "$BENCH_TMP/last.sockets")
profile b RunAllNetNS --all-netns

[ -s "$BENCH_TMP/stderr" ] && sort -u "$BENCH_TMP/stderr" >&2
echo
printf "%-34s %5s %8s %9s %8s %8s %8s\n" "" "netns" "sockets" "wall ms" "CPU ms" "us/sock" "CPU us/s"
cat "$BENCH_TMP/table"
awk -v aw="$a_wall" -v ac="$a_cpu" -v as="$a_sockets" -v bw="$b_wall" -v bc="$b_cpu" -v bs="$b_sockets" '
	function r(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
	BEGIN {
		printf "\nratio b/a (b: %d sockets, a: %d): %s wall, %s CPU; per socket %s wall, %s CPU\n",
			bs, as, r(bw, aw), r(bc, ac), r(bw / bs, aw / as), r(bc / bs, ac / as)
	}'
# Linearity: the CPU time per socket of each --all-netns row with
# namespaces of ours, against the smallest.
awk '$1 ~ /^[bc]\)/ && $NF > 0 { n++; k[n] = $2; u[n] = $NF }
	END {
		if (n < 2) exit
		printf "CPU per socket, %d namespaces = 1:", k[1]
		for (i = 2; i <= n; i++) printf " %d namespaces = %.2f;", k[i], u[i] / u[1]
		printf " (1.00 everywhere is linear)\n"
	}' "$BENCH_TMP/table"
