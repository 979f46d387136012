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
#            the socket over, finishes its requests and exits
#   SIGTERM  passed on: requests in flight finish, then exit
#   SIGINT   passed on: exit at once
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
