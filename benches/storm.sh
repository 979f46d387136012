#!/usr/bin/env bash
# Scrape-storm benchmark: the situation nomad-holepunch exists for. Several
# scrapers on one node (Prometheus replicas and other agents) each scrape
# /v1/metrics?format=prometheus once a second with gzip, through a proxy, in
# front of an agent that costs what a Nomad agent costs: a few ms of CPU to
# render its metrics, and one token check against the servers per request
# (examples/storm_agent.rs).
#
#   benches/storm.sh            (or: make bench)
#   SCRAPERS=64 DURATION=30 RENDER_MS=3 benches/storm.sh
#
# Compared: nomad-holepunch with its defaults, with HOLEPUNCH_METRICS_CACHE_TTL=1s
# and =2s (the longest age nginx's "1s" serves, see below),
# nginx as a plain proxy, and nginx with proxy_cache and proxy_cache_lock
# (the best an operator could configure), all with gzip. Reported over a
# fixed duration: requests reaching the agent per scrape, CPU (proxy plus
# agent, from /proc/PID/task/*/schedstat, in ns) per scrape, p99 scrape
# latency, and bytes on the wire per scrape. Every process started here is
# stopped by its PID.
set -euo pipefail

SCRAPERS=${SCRAPERS:-32}       # wrk connections, each one scraper at 1/s
DURATION=${DURATION:-20}       # seconds measured per target
RENDER_MS=${RENDER_MS:-3}      # the agent's CPU per render

. "$(dirname "$0")/common.sh"
install_missing storm.sh wrk=wrk nginx=nginx-light taskset=util-linux
release_build --example storm_agent
AGENT="$root/target/release/examples/storm_agent"
make_work storm

wait_for() {
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    echo "storm.sh: $1 did not answer 200" >&2
    exit 1
}

# The agent shares the load core with wrk, as the node's agent would share
# the node with everything else; its CPU is measured all the same.
taskset -c "$LOAD_CORE" "$AGENT" "$work/api.sock" "$TOKEN" "$RENDER_MS" &
agent_pid=$!
pids+=($agent_pid)
for _ in $(seq 100); do [ -S "$work/api.sock" ] && break; sleep 0.05; done
checks() { curl -s --unix-socket "$work/api.sock" http://agent/count; }

# Nanoseconds on CPU of a process and its children (nginx: master, worker).
procs_of() { echo "$1"; pgrep -P "$1" || true; }
cpu_ns() {
    local t=0
    for p in $(procs_of "$1"); do
        for s in /proc/"$p"/task/*/schedstat; do
            t=$((t + $(cut -d' ' -f1 "$s" 2>/dev/null || echo 0)))
        done
    done
    echo "$t"
}

cat > "$work/scraper.lua" <<'LUA'
-- Each connection is one scraper: a gzip scrape, then a second's pause.
wrk.headers["Accept-Encoding"] = "gzip"
function delay() return 1000 end
LUA

to_ms() { awk '{ v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v }'; }
to_bytes() { awk '{ v = $1; u = $1; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v);
    m = 1; if (u == "KB") m = 1024; else if (u == "MB") m = 1048576; else if (u == "GB") m = 1073741824;
    printf "%.0f", v * m }'; }

results="$work/results.tsv"
: > "$results"
# storm NAME PID PORT
storm() {
    local name=$1 pid=$2 port=$3
    local url="http://127.0.0.1:$port/v1/metrics?format=prometheus"
    wait_for "$url"
    local checks0 cpu0 agent0
    checks0=$(checks); cpu0=$(cpu_ns "$pid"); agent0=$(cpu_ns "$agent_pid")
    local out
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CORE" wrk -t1 -c"$SCRAPERS" -d"${DURATION}s" \
        --latency -s "$work/scraper.lua" "$url")
    local checks1 cpu1 agent1
    checks1=$(checks); cpu1=$(cpu_ns "$pid"); agent1=$(cpu_ns "$agent_pid")
    local scrapes p99 bytes errors
    scrapes=$(echo "$out" | awk '/requests in/ {print $1}')
    p99=$(echo "$out" | grep -E '^ +99%' | to_ms)
    bytes=$(echo "$out" | awk '/requests in/ {print $5}' | to_bytes)
    errors=$(echo "$out" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}')
    awk -v n="$name" -v s="$scrapes" -v a=$((checks1 - checks0)) -v pc=$((cpu1 - cpu0)) \
        -v ac=$((agent1 - agent0)) -v p="$p99" -v b="$bytes" -v e="$errors" 'BEGIN {
        printf "%s\t%d\t%.3f\t%.1f\t%.1f\t%.1f\t%s\t%.0f\t%d\n", n, s, a / s, pc / s / 1000, ac / s / 1000,
            (pc + ac) / s / 1000, p, b / s, e }' >> "$results"
    tail -1 "$results"
}

# --- nomad-holepunch, defaults and with the micro-cache ------------------
# TTL=2s is nginx's `proxy_cache_valid 200 1s` as it behaves: nginx keeps
# time in whole seconds, stores valid_sec = now + 1
# (src/http/ngx_http_upstream.c, ngx_http_upstream_send_response) and serves
# the entry until `valid_sec < now` (src/http/ngx_http_file_cache.c,
# ngx_http_file_cache_read), so a "1 s" entry lives 1 to 2 s.
for ttl in "" 1s 2s; do
    port=$(free_port)
    env -i PATH="$PATH" RUST_LOG=warn NOMAD_TOKEN="$TOKEN" HOLEPUNCH_BIND=127.0.0.1 HOLEPUNCH_PORT="$port" \
        HOLEPUNCH_SOCKET_PATH="$work/api.sock" NOMAD_TASK_DIR="$work" ${ttl:+HOLEPUNCH_METRICS_CACHE_TTL=$ttl} \
        taskset -c "$PROXY_CORE" "$BIN" 2>"$work/holepunch$ttl.log" &
    pid=$!
    pids+=($pid)
    storm "nomad-holepunch${ttl:+ TTL=$ttl}" $pid "$port"
    kill $pid
done

# --- nginx, plain and with proxy_cache_lock -------------------------------
for cache in off on; do
    port=$(free_port)
    mkdir -p "$work/nginx-$cache"
    if [ "$cache" = on ]; then
        cache_http="proxy_cache_path $work/nginx-$cache/cache keys_zone=metrics:1m max_size=64m;"
        cache_loc="proxy_cache metrics; proxy_cache_valid 200 1s; proxy_cache_lock on;
            proxy_cache_lock_timeout 5s; proxy_cache_use_stale updating; proxy_cache_background_update on;
            proxy_cache_key \$request_uri;"
    else
        cache_http=""
        cache_loc=""
    fi
    cat > "$work/nginx-$cache.conf" <<EOF
$nginx_user
worker_processes 1;
pid $work/nginx-$cache/nginx.pid;
error_log $work/nginx-$cache/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx-$cache;
    proxy_temp_path $work/nginx-$cache;
    fastcgi_temp_path $work/nginx-$cache;
    uwsgi_temp_path $work/nginx-$cache;
    scgi_temp_path $work/nginx-$cache;
    gzip on;
    gzip_comp_level 1;
    gzip_proxied any;
    # "text/plain" does not match the agent's "text/plain; version=0.0.4" here.
    gzip_types *;
    $cache_http
    upstream nomad {
        server unix:$work/api.sock;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://nomad;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Nomad-Token "$TOKEN";
            proxy_set_header Accept-Encoding "";
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
            $cache_loc
        }
    }
}
EOF
    taskset -c "$PROXY_CORE" nginx -e "$work/nginx-$cache/error.log" -c "$work/nginx-$cache.conf" -g 'daemon off;' &
    pid=$!
    pids+=($pid)
    if [ "$cache" = on ]; then storm "nginx proxy_cache_lock" $pid "$port"; else storm "nginx" $pid "$port"; fi
    kill $pid
done

echo
echo "storm.sh: $SCRAPERS scrapers, each one gzip scrape a second, for ${DURATION}s; agent render ${RENDER_MS} ms"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //')"
echo
echo "| target | scrapes | agent requests per scrape | proxy CPU us/scrape | agent CPU us/scrape | total CPU us/scrape | p99 ms | bytes/scrape | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$results"
