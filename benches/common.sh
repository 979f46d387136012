# Shared by benches/load.sh and benches/storm.sh (sourced, not run): the
# Debian packages they need, the release builds, a work directory, and
# stopping by PID every process they started.

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
