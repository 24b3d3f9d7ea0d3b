# Shared by the integration-test services (sourced, not run).

# stop_pid FILE: stop the daemon whose pid file is FILE, if it runs (TERM, then KILL after 5 s)
stop_pid() {
    local file=$1
    [[ -f "$file" ]] || return 0
    local pid
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}

# install_packages OPT_IN_VARIABLE PACKAGE...: install Debian packages with apt-get, only under
# CI=true or with the opt-in variable set to 1, and only as root; exits 3 otherwise
install_packages() {
    local opt_in=$1
    shift
    if [[ "${CI:-}" != true && "${!opt_in:-}" != 1 ]]; then
        echo "$* not installed (set $opt_in=1 to install)" >&2
        exit 3
    fi
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "cannot install $*: needs root and apt-get" >&2
        exit 3
    fi
    echo "installing $*" >&2
    apt-get update -q -o DPkg::Lock::Timeout=600 >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >&2
}
