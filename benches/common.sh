# Shared by the benchmark scripts in benches/ (sourced, not run): the
# repository root as the working directory, the token and the cores, the
# Debian packages they need, the release builds, a work directory, the nginx
# upstream, and stopping by PID every process they started.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# What the upstream expects, and what every proxy under test sends it.
TOKEN=bench-workload-token
# On 2 cores: the proxy measured alone on one, load and upstream on the other.
PROXY_CORE=${PROXY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}

# install_missing NAME COMMAND=PACKAGE...: apt-get the packages whose command
# is missing.
install_missing() {
    local name=$1 need=() pair
    shift
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || need+=("${pair#*=}")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    local sudo
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    echo "$name: installing ${need[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# release_build ARGS...: cargo build --release --locked ARGS, quiet unless it fails.
release_build() {
    cargo build --release --locked "$@" >/dev/null 2>&1 || cargo build --release --locked "$@"
}

# BIN=path/to/nomad-holepunch measures that build instead (an A/B run).
if [ -z "${BIN:-}" ]; then
    release_build --bin nomad-holepunch
    BIN="$root/target/release/nomad-holepunch"
fi

# make_work NAME: the work directory, removed on exit (KEEP_WORK=1 keeps it);
# every PID added to `pids` is stopped on exit, then killed if it lingers.
make_work() {
    work=$(mktemp -d "/tmp/holepunch-$1.XXXXXX")
}
# nginx started as root hands its workers to an unprivileged user, which could
# neither read the private work directory nor use the root-owned socket.
nginx_user=$([ "$(id -u)" = 0 ] && echo "user root;" || true)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    [ -n "${KEEP_WORK:-}" ] || [ -z "${work:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000)); }

# wait_for URL [curl args]: until it answers 200 (10 s at most).
wait_for() {
    local url=$1
    shift
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")" = 200 ] && return 0
        sleep 0.1
    done
    echo "$(basename "$0"): $url did not answer 200" >&2
    exit 1
}

# start_upstream CORE: the Task API's answers, fast: an nginx on CORE serving
# $work/api.sock (and 127.0.0.1:$up_port, for the ceiling row), with a
# 37-byte /v1/agent/health and a 90 KB Prometheus /v1/metrics, answering 401
# unless the caller sent X-Nomad-Token: $TOKEN.
start_upstream() {
    mkdir -p "$work/www/v1/agent"
    printf '{"client":{"ok":true,"message":"ok"}}' > "$work/www/v1/agent/health"
    awk 'BEGIN {
        print "# HELP nomad_client_allocations_running nomad_client_allocations_running"
        print "# TYPE nomad_client_allocations_running gauge"
        print "nomad_client_allocations_running{datacenter=\"dc1\",node_class=\"none\"} 3"
        n = 0; size = 0
        while (size < 90000) {
            line = sprintf("nomad_client_host_cpu_idle{cpu=\"cpu%d\",datacenter=\"dc1\",node_id=\"f7476465-4d6e-c0de-26d0-e383c49be941\"} 97.%d", n, n)
            print line; size += length(line) + 1; n++
        }
    }' > "$work/www/v1/metrics"
    up_port=$(free_port)
    mkdir -p "$work/upstream"
    cat > "$work/upstream.conf" <<EOF
    $nginx_user
    worker_processes 1;
    pid $work/upstream/nginx.pid;
    error_log $work/upstream/error.log;
    events { worker_connections 4096; }
    http {
        access_log off;
        sendfile on;
        keepalive_requests 1000000;
        client_body_temp_path $work/upstream;
        proxy_temp_path $work/upstream;
        fastcgi_temp_path $work/upstream;
        uwsgi_temp_path $work/upstream;
        scgi_temp_path $work/upstream;
        server {
            listen unix:$work/api.sock;
            listen 127.0.0.1:$up_port;
            root $work/www;
            add_header X-Nomad-Index 42;
            if (\$http_x_nomad_token != "$TOKEN") { return 401; }
            location = /v1/agent/health { default_type application/json; }
            location = /v1/metrics { default_type "text/plain; version=0.0.4; charset=utf-8"; }
        }
    }
EOF
    taskset -c "$1" nginx -e "$work/upstream/error.log" -c "$work/upstream.conf" -g 'daemon off;' &
    pids+=($!)
    wait_for "http://127.0.0.1:$up_port/v1/agent/health" -H "X-Nomad-Token: $TOKEN"
}
