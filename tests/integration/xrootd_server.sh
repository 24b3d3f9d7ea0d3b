#!/usr/bin/env bash
# A read-only XRootD server on localhost for the integration tests.
#
#   xrootd_server.sh start DIR PORT   install xrootd-server when missing (as root, with CI=true
#                                     or PNN_XROOTD_INSTALL=1) and serve DIR/data read-only on
#                                     127.0.0.1:PORT, so root://localhost:PORT//x.root is
#                                     DIR/data/x.root; state and log in DIR/state. xrootd refuses
#                                     to run as root: as root it runs as PNN_XROOTD_USER (default
#                                     nobody), which must be able to read DIR/data. Prints
#                                     URL=root://localhost:PORT/ once the server answers
#   xrootd_server.sh stop DIR         stop the server started by 'start DIR'
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:-}
dir=${2:-}
port=${3:-}
if [[ -z "$cmd" || -z "$dir" || ( "$cmd" == start && -z "$port" ) ]]; then
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
fi
dir=$(cd "$dir" && pwd)
pidfile="$dir/state/xrootd.pid"

if [[ "$cmd" == stop ]]; then
    stop_pid "$pidfile"
    exit 0
fi
[[ "$cmd" == start ]] || { echo "unknown command '$cmd': use start or stop" >&2; exit 2; }
[[ -d "$dir/data" ]] || { echo "nothing to serve: $dir/data is not a directory" >&2; exit 2; }

command -v xrootd >/dev/null || install_packages PNN_XROOTD_INSTALL xrootd-server

mkdir -p "$dir/state"
run=()
if [[ $(id -u) == 0 ]]; then
    user=${PNN_XROOTD_USER:-nobody}
    id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    chown "$user" "$dir/state"
    run=(runuser -u "$user" --)
fi

cat > "$dir/state/xrootd.cfg" <<CONF
xrd.port $port
xrd.network nodnr
all.export / r/o
oss.localroot $dir/data
all.adminpath $dir/state
all.pidpath $dir/state
CONF

rm -f "$pidfile"
"${run[@]}" xrootd -b -c "$dir/state/xrootd.cfg" -l "$dir/state/xrootd.log" -s "$pidfile"
for _ in $(seq 100); do
    if [[ -s "$pidfile" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "URL=root://localhost:$port/"
        exit 0
    fi
    sleep 0.1
done
echo "xrootd did not answer on port $port; log in $dir/state" >&2
tail -n 5 "$dir"/state/xrootd.log* >&2 || true
"$0" stop "$dir"
exit 1
