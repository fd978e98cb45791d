// Package e2e holds the end-to-end tests of sockpipe: they build the real
// programs with go build, run them as users do (examples/watch, streaming
// and cron style, as root and as an unprivileged user with capabilities),
// with test processes that open sockets on loopback and a DNS server on
// 127.0.0.1 that answers the reverse lookups, and check the documents that
// come out. They also check the deployment examples: the systemd units,
// the crontab line and the shipping script.
//
// The tests need root (to run helper processes as another user and grant
// capabilities) and the go command; without either they are skipped, as
// with -short. SOCKPIPE_E2E_RACE=1 builds the programs with -race.
package e2e
