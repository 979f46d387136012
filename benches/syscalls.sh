#!/usr/bin/env bash
# System calls and page faults per forwarded 90 KB scrape, plain and gzip,
# counted with `strace -f -c` and /proc/PID/stat: counts, not times, so they
# hold on a busy machine. This is how the allocator settings in
# src/allocator.rs were chosen; ENVS runs the proxy under other environments
# for an A/B (each entry one environment, "" for none).
#
#   benches/syscalls.sh
#   ENVS='"" "MALLOC_TRIM_THRESHOLD_=268435456"' benches/syscalls.sh
set -euo pipefail

DURATION=${DURATION:-5}
. "$(dirname "$0")/common.sh"
install_missing syscalls.sh wrk=wrk nginx=nginx-light strace=strace
make_work syscalls
start_upstream 1
# A distinct Accept per scrape (a junk query parameter no longer makes one:
# src/proxy/coalesce.rs, Coalescer::key); the -H headers are kept.
cat > "$work/distinct.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  headers["Accept"] = "text/plain;version=0.0.4;scrape=" .. n
  return wrk.format(nil, nil, headers)
end
LUA

eval "envs=(${ENVS:-'""'})"
echo "syscalls.sh: ${DURATION}s per row, 32 connections, each scrape a distinct target"
echo "| environment | encoding | requests | page faults/req | madvise | mmap | munmap | recvfrom | sendto | getpeername | epoll_wait |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for env_set in "${envs[@]}"; do
    for enc in plain gzip; do
        port=$(free_port)
        # shellcheck disable=SC2086 # one word per variable
        env -i PATH="$PATH" RUST_LOG=warn NOMAD_TOKEN="$TOKEN" HOLEPUNCH_BIND=127.0.0.1 HOLEPUNCH_PORT="$port" \
            HOLEPUNCH_SOCKET_PATH="$work/api.sock" NOMAD_TASK_DIR="$work" $env_set \
            strace -f -c -o "$work/strace.txt" "$BIN" 2>"$work/proxy.log" &
        tracer=$!
        pids+=($tracer)
        wait_for "http://127.0.0.1:$port/v1/agent/health"
        proxy=$(pgrep -P "$tracer" | head -1)
        pids+=($proxy)
        args=()
        [ "$enc" = gzip ] && args=(-H "Accept-Encoding: gzip")
        out=$(timeout $((DURATION + 30)) wrk -t1 -c32 -d"${DURATION}s" -s "$work/distinct.lua" "${args[@]}" \
            "http://127.0.0.1:$port/v1/metrics?format=prometheus")
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        faults=$(awk '{print $10}' "/proc/$proxy/stat")
        # strace writes its summary when the traced process has exited.
        kill "$proxy"
        wait "$tracer" 2>/dev/null || true
        awk -v n="$n" -v f="$faults" -v e="${env_set:-(defaults)}" -v enc="$enc" '
            { calls[$NF] = $4 }
            END {
                printf "| %s | %s | %d | %.2f", e, enc, n, f / n
                split("madvise mmap munmap recvfrom sendto getpeername epoll_wait", names, " ")
                for (i = 1; i <= 7; i++) printf " | %.2f", calls[names[i]] / n
                print " |"
            }' "$work/strace.txt"
    done
done
