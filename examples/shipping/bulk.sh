#!/bin/sh
# bulk.sh: send sockpipe's documents to Elasticsearch with its _bulk API,
# cron style. Each run:
#   1. runs examples/watch --once --bulk (one dump, compared with the
#      previous run's state) into spool files of BULK_LINES lines, when
#      anything changed;
#   2. POSTs every spool file, oldest first, to $ES_URL/_bulk with curl.
# A file is removed once Elasticsearch took every document in it. It is
# kept for the next run when Elasticsearch cannot be reached or asks to
# come back later (429, 5xx), so nothing is lost while it is down. It is
# moved aside as NAME.rejected (with Elasticsearch's answer in
# NAME.rejected.response) when Elasticsearch refused some documents or the
# request: sending it again would index the others twice.
#
# usage: bulk.sh [watch options]          e.g. bulk.sh --closed
#
# Environment:
#   ES_URL           Elasticsearch, e.g. https://es.example.com:9200 (needed)
#   ES_API_KEY       an API key, in the encoded form that Elasticsearch
#                    returns; sent as "Authorization: ApiKey ...". curl reads
#                    it and ES_URL on its stdin, never on its command line.
#   ES_CACERT        the CA certificate of a private CA
#   WATCH_STATE_DIR  where watch keeps its state; the spool is
#                    $WATCH_STATE_DIR/spool (needed)
#   ES_TEMPLATE      the index template to install first, e.g.
#                    /usr/local/lib/sockpipe/index-template.json (this
#                    directory's index-template.json): it is PUT to
#                    $ES_URL/_index_template/metrics-system.socket before
#                    the first send and again whenever the file changes, and
#                    nothing is sent while Elasticsearch refuses it. Unset,
#                    no template is installed (the API key then needs no
#                    manage_index_templates privilege); install it once by
#                    hand instead:
#                      curl -X PUT -H 'Content-Type: application/json' \
#                        --data-binary @index-template.json \
#                        "$ES_URL/_index_template/metrics-system.socket"
#   WATCH_INDEX      the data stream (default metrics-system.socket-default,
#                    which the template maps; without it, Elasticsearch's
#                    built-in metrics-*-* template does, guessing types)
#   WATCH            the watch script (default: ../watch beside this file)
#   BULK_LINES       lines per request (default 10000: 5000 documents)
# and every other variable of watch (watch --help).
#
# Exit status: 0 when every spool file was sent (or there was none), 1 when
# watch failed or a file was kept or rejected, 2 on bad settings.
#
# Crontab line (as the user that runs the pipeline, see examples/cron):
#   * * * * * ES_URL=https://es.example.com:9200 WATCH_STATE_DIR=/var/lib/sockpipe/bulk /usr/local/lib/sockpipe/bulk.sh

set -u
prog=bulk.sh
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

[ -n "${ES_URL:-}" ] || { say "set ES_URL to Elasticsearch's URL (https://HOST:9200)"; exit 2; }
[ -n "${WATCH_STATE_DIR:-}" ] || { say "set WATCH_STATE_DIR to the directory that keeps the state between runs"; exit 2; }
command -v curl >/dev/null || { say "curl is not installed"; exit 2; }
watch=${WATCH:-$(dirname -- "$0")/../watch}
[ -x "$watch" ] || { say "cannot run $watch: set WATCH to examples/watch"; exit 2; }
case $ES_URL in
*'"'* | *\\*) say "ES_URL must not hold quotes or backslashes"; exit 2 ;;
esac
if [ -n "${ES_TEMPLATE:-}" ] && [ ! -r "$ES_TEMPLATE" ]; then
	say "cannot read ES_TEMPLATE $ES_TEMPLATE"; exit 2
fi
case ${ES_API_KEY:-} in
*'"'* | *\\*) say "ES_API_KEY must not hold quotes or backslashes"; exit 2 ;;
esac

lines=${BULK_LINES:-10000}
case $lines in
'' | *[!0-9]* | 0 | *[13579]) say "BULK_LINES must be an even number of lines: '$lines'"; exit 2 ;;
esac

spool=$WATCH_STATE_DIR/spool
mkdir -p -- "$spool" || exit 1
status=0

# 1. What changed since the last run.
stamp=$(date -u +%Y%m%dT%H%M%SZ)-$$
part=$spool/$stamp.part
if "$watch" --once --bulk "$@" >"$part"; then
	# Requests of BULK_LINES lines (an action and its document are two),
	# a few MB each, well under Elasticsearch's 100 MB request limit.
	if [ ! -s "$part" ]; then
		rm -f -- "$part"
	elif split -l "$lines" -a 6 -- "$part" "$spool/$stamp."; then
		for chunk in "$spool/$stamp".??????; do
			mv -- "$chunk" "$chunk.ndjson"
		done
		rm -f -- "$part"
	else
		say "cannot split $part into requests: left there"
		status=1
	fi
else
	say "watch failed: its output, if any, is left in $part"
	status=1
fi

# 2. Send the spool, one run at a time (mkdir is atomic; a lock left by a
# run that was killed is taken over after an hour).
lock=$spool/.sending
if [ -d "$lock" ] && [ -n "$(find "$lock" -maxdepth 0 -mmin +60 2>/dev/null)" ]; then
	rmdir -- "$lock" 2>/dev/null
fi
if ! mkdir -- "$lock" 2>/dev/null; then
	say "another run is sending the spool; leaving it to that run"
	exit "$status"
fi
trap 'rmdir -- "$lock" 2>/dev/null' EXIT
trap 'exit 1' INT TERM HUP

# curl's settings on its stdin, so that neither the URL (which may hold a
# user and password) nor the API key shows in the process list.
# usage: curl_config PATH CONTENT-TYPE
curl_config() {
	printf 'url = "%s/%s"\n' "${ES_URL%/}" "$1"
	printf 'header = "Content-Type: %s"\n' "$2"
	if [ -n "${ES_API_KEY:-}" ]; then
		printf 'header = "Authorization: ApiKey %s"\n' "$ES_API_KEY"
	fi
}

# The index template, before any document (one indexed under another
# template would create the data stream with that template's mappings),
# when it was never installed from here or the file changed since.
installed=$WATCH_STATE_DIR/index-template.installed.json
if [ -n "${ES_TEMPLATE:-}" ] && ! cmp -s -- "$ES_TEMPLATE" "$installed"; then
	resp=$WATCH_STATE_DIR/index-template.response
	set -- --config - --silent --show-error --max-time 60 --request PUT \
		--output "$resp" --write-out '%{http_code}' --data-binary "@$ES_TEMPLATE"
	[ -n "${ES_CACERT:-}" ] && set -- "$@" --cacert "$ES_CACERT"
	code=$(curl_config _index_template/metrics-system.socket application/json | curl "$@") || code=000
	case $code in
	2??)
		cp -- "$ES_TEMPLATE" "$installed" && rm -f -- "$resp"
		;;
	*)
		say "Elasticsearch did not take the index template $ES_TEMPLATE (HTTP $code): see $resp; nothing sent"
		exit 1
		;;
	esac
fi

for file in "$spool"/*.ndjson; do
	[ -e "$file" ] || continue
	resp=$file.response
	set -- --config - --silent --show-error --max-time 300 \
		--output "$resp" --write-out '%{http_code}' --data-binary "@$file"
	[ -n "${ES_CACERT:-}" ] && set -- "$@" --cacert "$ES_CACERT"
	code=$(curl_config _bulk application/x-ndjson | curl "$@") || code=000
	case $code in
	2??)
		# Compact and pretty responses both say whether an item failed.
		if grep -Eq '"errors"[[:space:]]*:[[:space:]]*false' "$resp"; then
			rm -f -- "$file" "$resp"
		else
			mv -- "$file" "$file.rejected"
			mv -- "$resp" "$file.rejected.response"
			say "Elasticsearch refused some documents of $file: see $file.rejected.response"
			status=1
		fi
		;;
	400 | 413)
		mv -- "$file" "$file.rejected"
		mv -- "$resp" "$file.rejected.response" 2>/dev/null
		say "Elasticsearch refused $file (HTTP $code): see $file.rejected.response"
		status=1
		;;
	*)
		rm -f -- "$resp"
		say "cannot send $file (HTTP $code): kept for the next run"
		status=1
		break
		;;
	esac
done
exit "$status"
