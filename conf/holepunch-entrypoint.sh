#!/bin/sh
# Entrypoint for running nomad-holepunch in a Nomad task with reloads that
# drop no request:
#
#   holepunch-entrypoint.sh /usr/local/bin/nomad-holepunch -c local/holepunch.yaml
#
# The first argument is the binary; the rest are passed to it.
#
#   SIGHUP   hand over to a new nomad-holepunch, started with -u, which reads
#            everything afresh at its start: the environment, the -c
#            settings, and every file (token, client tokens, certificate).
#            So a SIGHUP here re-reads every file too, and also applies what
#            only a new process can (the -c file). The handover happens only
#            when it can succeed; otherwise the running process keeps
#            serving, and one line on stderr says why:
#            1. `nomad-holepunch --check`, with the same arguments and
#               environment, must pass (a token file empty for a moment, a
#               broken certificate: no handover), and name the same upgrade
#               socket as the running process's (it sends its listening
#               socket there);
#            2. the running process must handle SIGQUIT (it may be starting
#               still; a shell starts it with SIGQUIT ignored until then);
#            3. the new process starts with -u; only once it waits for the
#               sockets (its upgrade socket appears: pingora-core 0.9.1
#               `server/transfer_fd/mod.rs`, `get_fds_from`, binds it, waits
#               about 6 s for the old process, and removes it once it has
#               the sockets) does the old one get SIGQUIT. A new process
#               that exits first, or makes no socket within 30 s, leaves the
#               old one serving.
#            One handover at a time: a SIGHUP during one is remembered (one
#            line says so) and handled once it ends; several during one
#            make one more handover.
#   SIGTERM  passed on: requests in flight finish, then exit
#   SIGINT   passed on: exit at once
#
# Every nomad-holepunch is started with SIGHUP ignored (a signal a shell
# traps is reset to its default in a child; one ignored stays ignored across
# exec), so that a SIGHUP can never end one before its main ignores it.
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
# POSIX sh, plus `sleep` taking fractions of a second (coreutils, busybox).
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 /path/to/nomad-holepunch [nomad-holepunch options]" >&2
    exit 2
fi
bin=$1
shift

say() {
    echo "holepunch-entrypoint: $*" >&2
}

# Starts "$bin" with these arguments in the background, SIGHUP ignored from
# its first instruction; its PID in $started.
start() {
    ( trap '' HUP; exec "$bin" "$@" ) &
    started=$!
}

# Runs `nomad-holepunch --check` with these arguments: its exit status in
# $checked, and the upgrade socket it names in $named (empty if it fails).
# Its stdout (the settings) is read, not shown; its stderr (what is wrong)
# goes to the script's.
check() {
    named=
    if out=$( trap '' HUP; exec "$bin" "$@" --check ); then
        checked=0
        named=$(printf '%s\n' "$out" | sed -n 's/^upgrade socket: //p' | head -n 1)
    else
        checked=$?
    fi
}

# Whether process $1 is still running (the shell reaps its children while
# it runs anything in the foreground, `sleep` included).
alive() {
    kill -0 "$1" 2>/dev/null
}

# Whether process $1 handles SIGQUIT yet. A shell without job control
# starts a command in the background with SIGINT and SIGQUIT ignored (POSIX
# Shell Command Language, 2.11 Signals and Error Handling), until Pingora
# installs its handlers once the process runs (pingora-core 0.9.1
# `server/mod.rs`, `main_loop`): a SIGQUIT before that is lost, and the new
# process waits for sockets that never come. Without /proc there is no
# telling: yes.
handles_quit() {
    [ -r /proc/self/status ] || return 0
    mask=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)
    case $mask in
        *[4567cdefCDEF]) return 0 ;;
        *) return 1 ;;
    esac
}

# A handover, or a line saying why not. Sets $child to the process serving.
reload() {
    busy=1
    check "$@"
    if [ "$checked" -ne 0 ]; then
        say "SIGHUP: no handover: nomad-holepunch --check fails with the files and settings as they are now (exit $checked; its reasons above); the running process (pid $child) keeps serving"
        busy=0
        return
    fi
    if [ -z "$named" ]; then
        say "SIGHUP: no handover: nomad-holepunch --check names no upgrade socket; the running process (pid $child) keeps serving"
        busy=0
        return
    fi
    if [ -n "$sock" ] && [ "$named" != "$sock" ]; then
        say "SIGHUP: no handover: the new settings put the upgrade socket at $named, but the running process (pid $child) sends its listening socket to $sock; it keeps serving (restart the task to move the socket)"
        busy=0
        return
    fi
    # The running process may have just started (the previous handover).
    waited=0
    until handles_quit "$child"; do
        if [ -n "$stopping" ] || ! alive "$child"; then
            busy=0
            return
        fi
        if [ "$waited" -ge 300 ]; then
            say "SIGHUP: no handover: the running process (pid $child) has not handled SIGQUIT for 30 s; it keeps serving"
            busy=0
            return
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    if [ -n "$stopping" ]; then
        busy=0
        return
    fi
    say "SIGHUP: starting a new nomad-holepunch with -u; it reads every file and setting afresh, then takes over"
    # A socket left by a process that died waiting would look like a new
    # one waiting. Nothing else listens there: handovers are one at a time.
    rm -f "$named"
    start "$@" -u
    new=$started
    waited=0
    while [ ! -S "$named" ]; do
        if [ -n "$stopping" ]; then
            new=
            busy=0
            return
        fi
        if ! alive "$new"; then
            wait "$new"
            say "SIGHUP: no handover: the new process (pid $new) exited with status $? before it waited for the listening socket; the running process (pid $child) keeps serving"
            new=
            busy=0
            return
        fi
        if [ "$waited" -ge 300 ]; then
            kill -TERM "$new" 2>/dev/null
            wait "$new"
            say "SIGHUP: no handover: the new process (pid $new) made no upgrade socket at $named within 30 s and was stopped; the running process (pid $child) keeps serving"
            new=
            busy=0
            return
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    if [ -n "$stopping" ]; then
        new=
        busy=0
        return
    fi
    old=$child
    kill -QUIT "$old" 2>/dev/null
    # The new process removes its socket once it has the listening socket.
    waited=0
    while [ -S "$named" ] && alive "$new" && [ "$waited" -lt 150 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    child=$new
    new=
    sock=$named
    busy=0
    if alive "$child"; then
        say "SIGHUP: handover done: pid $child serves; pid $old finishes its requests in flight and exits"
    else
        say "SIGHUP: the new process (pid $child) exited during the handover"
    fi
}

hangup() {
    if [ "$busy" = 1 ]; then
        say "SIGHUP during a handover: handled once this one ends"
    fi
    pending=1
}

stop() {
    stopping=$1
    kill -"$1" "$child" 2>/dev/null
    if [ -n "$new" ]; then
        kill -"$1" "$new" 2>/dev/null
    fi
}

pending=0
busy=0
stopping=
new=
trap hangup HUP
trap 'stop TERM' TERM
trap 'stop INT' INT

# The running process's upgrade socket, from --check (whose complaints, if
# any, the start below repeats).
check "$@" 2>/dev/null
sock=$named
start "$@"
child=$started

# `wait` returns early whenever a trapped signal arrives: handle a SIGHUP,
# keep waiting for whichever process is current, and exit with its status.
status=0
while :; do
    if [ "$pending" = 1 ] && [ -z "$stopping" ]; then
        pending=0
        reload "$@"
        continue
    fi
    if ! alive "$child"; then
        wait "$child"
        status=$?
        break
    fi
    wait "$child"
    status=$?
    alive "$child" || break
done
# Processes that were handed over from finish their requests first.
wait
exit "$status"
