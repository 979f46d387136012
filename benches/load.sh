#!/usr/bin/env bash
# Load benchmark: nomad-holepunch against the floor (the smallest Pingora
# proxy doing the same job, examples/floor.rs), and against nginx and HAProxy
# configured as the same proxy, all in front of one fast upstream on a Unix
# socket.
#
#   benches/load.sh            (or: make bench)
#   DURATION=20 benches/load.sh
#   BIN=/tmp/other-build/nomad-holepunch benches/load.sh   (measure another build)
#   PATHS=/v1/agent/health CONNECTIONS=32 benches/load.sh   (fewer rows)
#
# Layout on a 2-core machine:
#   core 0: the proxy being measured, alone;
#   core 1: the load generator (wrk) and the upstream (an nginx serving the
#           Task API's answers on a Unix socket, and on TCP for the ceiling).
#
# A second nomad-holepunch with HOLEPUNCH_METRICS_CACHE_TTL=1s serves the
# cached gzip scrape row (one target, every client asking for gzip).
#
# For each target, path and connection count it prints requests/s, p50 and
# p99 latency, the proxy's CPU time per request (from /proc/PID/stat), and
# the proxy's peak RSS, then the ratios to nginx. Every phase is bounded in
# time, and every process started here is stopped by its PID on exit.
set -euo pipefail

DURATION=${DURATION:-10}      # seconds measured per row
WARMUP=${WARMUP:-2}           # seconds of load before measuring
CONNECTIONS=${CONNECTIONS:-"32 256"}
PATHS=${PATHS:-"/v1/agent/health /v1/metrics?format=prometheus"}

# --- what the benchmark needs -------------------------------------------
. "$(dirname "$0")/common.sh"
install_missing load.sh wrk=wrk nginx=nginx-light haproxy=haproxy taskset=util-linux
# The floor, built from the same lock file and profile.
release_build --example floor
FLOOR="$root/target/release/examples/floor"
make_work load

start_upstream "$LOAD_CORE"

# --- the proxies under test, each alone on the proxy core ---------------
# nomad-holepunch runs with its defaults (no -c); its pid file and upgrade
# socket go to NOMAD_TASK_DIR, here the work directory. wrk is one client
# address: HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=256 lets its 256 connections
# all be in flight, as they were before that share existed (its default, 64,
# would answer 503 past it).
hp_port=$(free_port)
env -i PATH="$PATH" RUST_LOG=warn NOMAD_TOKEN="$TOKEN" HOLEPUNCH_BIND=127.0.0.1 HOLEPUNCH_PORT="$hp_port" \
    HOLEPUNCH_SOCKET_PATH="$work/api.sock" NOMAD_TASK_DIR="$work" HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=256 ${HP_ENV:-} \
    taskset -c "$PROXY_CORE" "$BIN" 2>"$work/holepunch.log" &
hp_pid=$!
pids+=($hp_pid)

# The same proxy with the micro-cache on, for the cached gzip scrape row.
hpt_port=$(free_port)
mkdir -p "$work/ttl"
env -i PATH="$PATH" RUST_LOG=warn NOMAD_TOKEN="$TOKEN" HOLEPUNCH_BIND=127.0.0.1 HOLEPUNCH_PORT="$hpt_port" \
    HOLEPUNCH_SOCKET_PATH="$work/api.sock" NOMAD_TASK_DIR="$work/ttl" HOLEPUNCH_METRICS_CACHE_TTL=1s \
    HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=256 ${HP_ENV:-} \
    taskset -c "$PROXY_CORE" "$BIN" 2>"$work/holepunch-ttl.log" &
hpt_pid=$!
pids+=($hpt_pid)

# The floor with the best Pingora settings for one thread.
fl_port=$(free_port)
printf -- '---\nversion: 1\nthreads: 1\nwork_stealing: false\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\nupgrade_sock: %s\npid_file: %s\n' \
    "$work/fl_upgrade.sock" "$work/fl.pid" > "$work/floor.yaml"
env -i PATH="$PATH" RUST_LOG=warn \
    taskset -c "$PROXY_CORE" "$FLOOR" "127.0.0.1:$fl_port" "$work/api.sock" "$TOKEN" -c "$work/floor.yaml" \
    2>"$work/floor.log" &
fl_pid=$!
pids+=($fl_pid)

ng_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
$nginx_user
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    upstream nomad {
        server unix:$work/api.sock;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$ng_port;
        location / {
            proxy_pass http://nomad;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Nomad-Token "$TOKEN";
            proxy_set_header Authorization "";
            # Room for a whole 90 KB scrape in memory: no temp files.
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
        }
    }
}
EOF
taskset -c "$PROXY_CORE" nginx -e "$work/nginx/error.log" -c "$work/nginx.conf" -g 'daemon off;' &
ng_pid=$!
pids+=($ng_pid)

ha_port=$(free_port)
cat > "$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 360s
    timeout server 360s
    http-reuse always
frontend holepunch
    bind 127.0.0.1:$ha_port
    default_backend nomad
backend nomad
    http-request set-header X-Nomad-Token $TOKEN
    http-request del-header Authorization
    server api unix@$work/api.sock
EOF
taskset -c "$PROXY_CORE" haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
ha_pid=$!
pids+=($ha_pid)

# The proxies must add the token themselves: the upstream answers 401 without it.
for port in $hp_port $hpt_port $fl_port $ng_port $ha_port; do
    wait_for "http://127.0.0.1:$port/v1/agent/health"
done

# --- measuring -----------------------------------------------------------
# The processes that make up a target (nginx: master and worker).
procs_of() { [ "$1" = 0 ] && return; echo "$1"; pgrep -P "$1" || true; }
# CPU ticks (user + system) used so far by those processes.
cpu_ticks() {
    local t=0
    for p in $(procs_of "$1"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
# A /proc/PID/status field in KiB (VmHWM: peak resident memory, VmRSS:
# current), summed over those processes.
status_kib() {
    local k=0
    for p in $(procs_of "$1"); do
        k=$((k + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status")))
    done
    echo "$k"
}
peak_rss_kib() { status_kib "$1" VmHWM; }
rss_kib() { status_kib "$1" VmRSS; }
hz=$(getconf CLK_TCK)

# wrk's latency line ("99%  1.23ms") in milliseconds.
to_ms() { awk '{ v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.3f", v }'; }

# Distinct scrapes for the metrics rows, so that every proxy forwards every
# request: identical concurrent scrapes would be coalesced by nomad-holepunch
# (shown in a row of its own). It shares metrics by what Nomad reads of them
# (format, pretty, Accept: src/proxy/coalesce.rs, Coalescer::key), so a junk query
# parameter no longer makes a scrape distinct: a distinct Accept does. The
# -H headers are kept; the upstream ignores Accept.
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

results="$work/results.tsv"
: > "$results"
idle_hp_kib=$(rss_kib $hp_pid)

# measure NAME PID PORT PATH CONNS [extra wrk args]
measure() {
    local name=$1 pid=$2 port=$3 path=$4 conns=$5
    shift 5
    local url="http://127.0.0.1:$port$path"
    # Only the direct upstream is sent the token; proxies must add it.
    [ "$pid" = 0 ] && set -- -H "X-Nomad-Token: $TOKEN" "$@"
    timeout $((WARMUP + 10)) taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${WARMUP}s" \
        "$@" "$url" >/dev/null
    local before
    before=$(cpu_ticks "$pid")
    local out
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${DURATION}s" \
        --latency "$@" "$url")
    local after
    after=$(cpu_ticks "$pid")
    local requests rps p50 p99 errors
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
    p50=$(echo "$out" | grep -E '^ +50%' | to_ms)
    p99=$(echo "$out" | grep -E '^ +99%' | to_ms)
    errors=$(echo "$out" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}')
    local cpu_us="-" rss="-"
    if [ "$pid" != 0 ]; then
        cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')
        rss=$(awk -v k="$(peak_rss_kib "$pid")" 'BEGIN { printf "%.1f", k / 1024 }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$conns" "$rps" "$p50" "$p99" "$cpu_us" "$rss" "$errors" >> "$results"
    printf '  %-22s %-36s c=%-4s %8s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req  peak rss %6s MB  errors %s\n' \
        "$name" "$path" "$conns" "$rps" "$p50" "$p99" "$cpu_us" "$rss" "$errors"
}

echo "load.sh: ${DURATION}s per row after ${WARMUP}s of warm-up; proxies on core $PROXY_CORE, wrk and upstream on core $LOAD_CORE"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
read -ra paths <<< "$PATHS"
for path in "${paths[@]}"; do
    for conns in $CONNECTIONS; do
        distinct=()
        [ "$path" != /v1/agent/health ] && distinct=(-s "$work/distinct.lua")
        measure "upstream (TCP, ceiling)" 0 "$up_port" "$path" "$conns" "${distinct[@]}"
        measure nomad-holepunch $hp_pid "$hp_port" "$path" "$conns" "${distinct[@]}"
        measure "pingora floor" $fl_pid "$fl_port" "$path" "$conns" "${distinct[@]}"
        measure nginx $ng_pid "$ng_port" "$path" "$conns" "${distinct[@]}"
        measure haproxy $ha_pid "$ha_port" "$path" "$conns" "${distinct[@]}"
        if [ "$path" != /v1/agent/health ]; then
            measure "nomad-holepunch gzip" $hp_pid "$hp_port" "$path" "$conns" -H "Accept-Encoding: gzip" "${distinct[@]}"
            measure "nomad-holepunch coalesced" $hp_pid "$hp_port" "$path" "$conns"
            measure "nomad-holepunch TTL=1s gzip" $hpt_pid "$hpt_port" "$path" "$conns" -H "Accept-Encoding: gzip"
        fi
    done
done

# --- the table -----------------------------------------------------------
echo
echo "| target | path | conns | req/s | p50 ms | p99 ms | CPU us/req | peak RSS MB | errors | req/s vs nginx | p99 vs nginx | CPU vs nginx | CPU vs floor |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '
    { row[NR] = $0
      if ($1 == "nginx") { ng_rps[$2, $3] = $4; ng_p99[$2, $3] = $6; ng_cpu[$2, $3] = $7 }
      if ($1 == "pingora floor") { fl_cpu[$2, $3] = $7 } }
    END {
        for (i = 1; i <= NR; i++) {
            split(row[i], f, "\t")
            r = f[4] / ng_rps[f[2], f[3]]
            p = (ng_p99[f[2], f[3]] > 0) ? f[6] / ng_p99[f[2], f[3]] : 0
            c = (f[7] != "-" && ng_cpu[f[2], f[3]] > 0) ? sprintf("%.2fx", f[7] / ng_cpu[f[2], f[3]]) : "-"
            l = (f[7] != "-" && fl_cpu[f[2], f[3]] > 0) ? sprintf("%.2fx", f[7] / fl_cpu[f[2], f[3]]) : "-"
            printf "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %.2fx | %.2fx | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], r, p, c, l
        }
    }' "$results"
echo
echo "nomad-holepunch idle RSS before the load: $(awk -v k="$idle_hp_kib" 'BEGIN { printf "%.1f", k / 1024 }') MB"
