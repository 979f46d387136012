#!/bin/sh
# Entrypoint for running nomad-holepunch in a Nomad task with reloads that
# drop no request:
#
#   holepunch-entrypoint.sh /usr/local/bin/nomad-holepunch -c local/holepunch.yaml
#
# The first argument is the binary; the rest are passed to it.
#
#   SIGHUP   start a new nomad-holepunch with -u, which takes over the
#            listening socket, and send the old one SIGQUIT so that it hands
#            the socket over, finishes its requests and exits. The new
#            process reads everything afresh at its start: the environment,
#            the -c settings, and every file (token, client tokens,
#            certificate), so a SIGHUP here re-reads every file too, and
#            also applies what only a new process can (the -c file). One
#            line on stderr says so.
#   SIGTERM  passed on: requests in flight finish, then exit
#   SIGINT   passed on: exit at once
#
# Without this script, nomad-holepunch answers SIGHUP itself: it re-reads
# every watched file at once, in place (no new process, no handover), and
# logs that it did. That cannot apply a changed -c file: use the script
# for that.
#
# In a job, let a template that renders the Pingora config (-c) send SIGHUP:
#
#   template {
#     destination   = "local/holepunch.yaml"
#     change_mode   = "signal"
#     change_signal = "SIGHUP"
#     ...
#   }
#
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 /path/to/nomad-holepunch [nomad-holepunch options]" >&2
    exit 2
fi
bin=$1
shift

"$bin" "$@" &
child=$!

reload() {
    echo "holepunch-entrypoint: SIGHUP: starting a new nomad-holepunch with -u; it reads every file and setting afresh, then takes over" >&2
    "$bin" -u "$@" &
    new=$!
    # The old process retries the handover for a few seconds, so the new
    # one need not be listening on the upgrade socket yet.
    kill -QUIT "$child" 2>/dev/null
    child=$new
}

trap 'reload "$@"' HUP
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT

# `wait` returns early whenever a trapped signal arrives: keep waiting for
# whichever process is current, and exit with its status.
status=0
while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
done
exit "$status"
