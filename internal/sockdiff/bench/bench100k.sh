#!/bin/sh
# bench100k.sh measures sockdiff on a host holding 100,000 loopback TCP
# sockets (internal/bench/sockhold), fed by the real sockdump:
#   - streaming: sockdump --interval 1s --count 6 | sockdiff --closed,
#     CPU time and peak memory of sockdiff for 6 snapshots;
#   - cron: two runs of sockdump | sockdiff --state FILE, each timed, and
#     the size of the state file.
# Run from the repository root: sh internal/sockdiff/bench/bench100k.sh
# It uses only loopback and removes what it made. Other heavy runs wait on
# /tmp/sockpipe-heavy.lock.
set -eu
n=${N:-100000}
tmp=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/sockdump" ./cmd/sockdump
go build -o "$tmp/sockdiff" ./cmd/sockdiff
go build -o "$tmp/sockhold" ./internal/bench/sockhold

exec 9>/tmp/sockpipe-heavy.lock
flock 9
mkfifo "$tmp/hold.in"
"$tmp/sockhold" -n "$n" <"$tmp/hold.in" >"$tmp/hold.out" &
exec 3>"$tmp/hold.in" # sockhold holds its sockets until this closes
i=0
until grep -q '^ready' "$tmp/hold.out" 2>/dev/null; do
	i=$((i + 1))
	if [ "$i" -gt 600 ]; then echo "sockhold not ready after 60s" >&2; exit 1; fi
	sleep 0.1
done
echo "sockets held: $n ($(ss -Htan | wc -l) TCP sockets on the host)"

"$tmp/sockdump" >"$tmp/one.ndjson"
echo "one snapshot: $(grep -c '"type":"socket"' "$tmp/one.ndjson") socket records, $(wc -c <"$tmp/one.ndjson") bytes"

echo "== streaming, 6 snapshots one second apart"
"$tmp/sockdump" --interval 1s --count 6 |
	/usr/bin/time -f 'sockdiff: %U s user, %S s system, %M KiB max RSS, %e s elapsed' "$tmp/sockdiff" --closed >"$tmp/stream.out"
echo "events: $(grep -c '"event"' "$tmp/stream.out")"

echo "== cron, two runs sharing a state file"
for run in 1 2; do
	"$tmp/sockdump" >"$tmp/snap$run.ndjson"
	/usr/bin/time -f "run $run: %U s user, %S s system, %M KiB max RSS, %e s elapsed" \
		"$tmp/sockdiff" --closed --state "$tmp/state" <"$tmp/snap$run.ndjson" >"$tmp/run$run.out"
	echo "run $run: $(grep -c '"event"' "$tmp/run$run.out") events, state file $(wc -c <"$tmp/state") bytes"
done
exec 3>&-
wait
