#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a
# busy machine, where the CPU time of benches/load.sh moves by up to 2x
# between runs. It compares nomad-holepunch (its defaults, no -c) with the
# Pingora floor (examples/floor.rs) on the same requests, so "what the
# project adds to Pingora" is one number that does not depend on the noise.
#
#   benches/instructions.sh                 (make bench runs it)
#   DURATION=30 benches/instructions.sh
#   HP_ENV='MALLOC_ARENA_MAX=1' benches/instructions.sh   (an A/B of the proxy's environment)
#   BIN=/tmp/old/nomad-holepunch FLOOR=/tmp/old/floor benches/instructions.sh   (other builds)
#
# Callgrind counts user-space instructions only: the kernel's share (the
# socket I/O, about 44% of the proxy's CPU in the profile in
# docs/performance.md) is the same syscalls for both, and page faults are
# printed alongside. Each target runs alone under callgrind; wrk warms it up,
# then the counters are zeroed, wrk runs for a fixed time, the counters are
# dumped, and the instructions are divided by the requests wrk saw answered
# (the few in flight at the end, fewer than the connections, are not). Everything started here is stopped by its PID.
set -euo pipefail

DURATION=${DURATION:-10}      # seconds counted per row (a few thousand requests under callgrind)
CONNECTIONS=${CONNECTIONS:-"32"}
PATHS=${PATHS:-"/v1/agent/health /v1/metrics?format=prometheus"}

. "$(dirname "$0")/common.sh"
install_missing instructions.sh wrk=wrk nginx=nginx-light valgrind=valgrind
if [ -z "${FLOOR:-}" ]; then
    release_build --example floor
    FLOOR="$root/target/release/examples/floor"
fi
make_work instructions
start_upstream 1

# Every metrics request gets a distinct Accept, so nothing is coalesced (a
# junk query parameter no longer makes a scrape distinct: src/coalesce.rs,
# Coalescer::key); wrk reports any answer other than 200.
cat > "$work/count.lua" <<'LUA'
local n, distinct = 0, false
init = function(args) distinct = args[1] == "distinct" end
request = function()
  n = n + 1
  if distinct then
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    headers["Accept"] = "text/plain;version=0.0.4;scrape=" .. n
    return wrk.format(nil, nil, headers)
  end
  return wrk.format()
end
LUA

# start_target NAME: $port and $pid of the target, started under
# callgrind with collection on.
start_target() {
    local name=$1 out="$work/$1.callgrind"
    port=$(free_port)
    case $name in
    nomad-holepunch*)
        env -i PATH="$PATH" RUST_LOG=warn NOMAD_TOKEN="$TOKEN" HOLEPUNCH_BIND=127.0.0.1 HOLEPUNCH_PORT="$port" \
            HOLEPUNCH_SOCKET_PATH="$work/api.sock" NOMAD_TASK_DIR="$work" HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=256 ${HP_ENV:-} \
            valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" 2>"$work/$name.log" &
        ;;
    floor)
        printf -- '---\nversion: 1\nthreads: 1\nwork_stealing: false\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\nupgrade_sock: %s\npid_file: %s\n' \
            "$work/fl_upgrade.sock" "$work/fl.pid" > "$work/floor.yaml"
        env -i PATH="$PATH" RUST_LOG=warn \
            valgrind --tool=callgrind --callgrind-out-file="$out" "$FLOOR" "127.0.0.1:$port" "$work/api.sock" "$TOKEN" -c "$work/floor.yaml" \
            2>"$work/$name.log" &
        ;;
    esac
    pid=$!
    pids+=($pid)
    # Valgrind is slow to start a Pingora server: up to 60 s.
    for _ in $(seq 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/agent/health")" = 200 ] && return 0
        sleep 0.1
    done
    echo "instructions.sh: $name did not start; see $work/$name.log" >&2
    exit 1
}

stop_target() {
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

# Total Ir of the newest callgrind dump of the target.
dumped_ir() {
    local f
    f=$(ls -t "$work/$1.callgrind"* | head -1)
    awk '/^summary:/ {print $2}' "$f"
}
minflt() { awk '{print $10}' "/proc/$1/stat"; }

results="$work/results.tsv"
: > "$results"
read -ra paths <<< "$PATHS"
echo "instructions.sh: ${DURATION}s per row under $(valgrind --version)"
for target in floor nomad-holepunch; do
    start_target "$target"
    for path in "${paths[@]}"; do
        for conns in $CONNECTIONS; do
            for enc in plain gzip; do
                [ "$enc" = gzip ] && { [ "$target" = floor ] || [ "$path" = /v1/agent/health ]; } && continue
                args=()
                [ "$enc" = gzip ] && args=(-H "Accept-Encoding: gzip")
                mode=same
                [ "$path" != /v1/agent/health ] && mode=distinct
                url="http://127.0.0.1:$port$path"
                # Warm-up: connections, pools and buffers, then zero the counters.
                timeout 60 wrk -t1 -c"$conns" -d3s -s "$work/count.lua" "${args[@]}" "$url" -- "$mode" >/dev/null
                callgrind_control -z "$pid" >/dev/null 2>&1
                f0=$(minflt "$pid")
                out=$(timeout $((DURATION + 60)) wrk -t1 -c"$conns" -d"${DURATION}s" -s "$work/count.lua" "${args[@]}" "$url" -- "$mode" 2>&1)
                f1=$(minflt "$pid")
                callgrind_control -d "$pid" >/dev/null 2>&1
                n=$(echo "$out" | awk '/requests in/ {print $1}')
                bad=$(echo "$out" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}')
                ir=$(dumped_ir "$target")
                name=$target
                [ "$enc" = gzip ] && name="$target gzip"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$conns" "$n" "$ir" "$((f1 - f0))" "$bad" >> "$results"
                awk -v n="$n" -v ir="$ir" -v f=$((f1 - f0)) -v t="$name" -v p="$path" -v c="$conns" -v b="$bad" \
                    'BEGIN { printf "  %-22s %-36s c=%-4s %7d requests  %9.0f instructions/req  %6.2f page faults/req  errors %s\n", t, p, c, n, ir / n, f / n, b }'
            done
        done
    done
    stop_target
done

echo
echo "| target | path | conns | requests | instructions/req | page faults/req | errors | instructions vs floor |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' '
    { row[NR] = $0; if ($1 == "floor") fl[$2, $3] = $5 / $4 }
    END {
        for (i = 1; i <= NR; i++) {
            split(row[i], f, "\t")
            per = f[5] / f[4]
            printf "| %s | `%s` | %s | %d | %.0f | %.2f | %s | %.2fx |\n", f[1], f[2], f[3], f[4], per, f[6] / f[4], f[7], per / fl[f[2], f[3]]
        }
    }' "$results"
