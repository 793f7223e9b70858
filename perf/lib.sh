# Shared helpers of perf/*.sh (sourced, not run). Bash only.
#
# Every process started through `bg` is recorded and stopped by `stop_all` (which the
# scripts call from their EXIT trap): SIGTERM, then SIGKILL after a grace period. Nothing
# is ever killed by name.

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PERF_DIR/.." && pwd)
SF=${SF:-$REPO/target/release/shardflow}
LOADGEN=${LOADGEN:-$REPO/target/release/loadgen}
VENV=${OSKEN_VENV:-$PERF_DIR/.venv}

# The benchmarks point their own bridges at the daemon: node management (which would add the
# node's bridge br-int to the sandbox named by OVS_RUNDIR) stays off unless asked for.
export SHARDFLOW_NODE_OVSDB=${SHARDFLOW_NODE_OVSDB:-none}

BG_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bg LOGFILE CMD...: start CMD in the background (stdout+stderr to LOGFILE); sets BG_PID.
bg() {
    local out=$1; shift
    "$@" >"$out" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

# run_wait OUTFILE CMD...: run CMD in the background (tracked like `bg`) and wait for it.
# Unlike a foreground command, `wait` lets a TERM/INT trap run at once (the trap then stops
# CMD through stop_all). Returns CMD's exit status.
run_wait() {
    local out=$1; shift
    "$@" >"$out" 2>&1 &
    local pid=$!
    BG_PIDS+=("$pid")
    local rc=0
    wait "$pid" || rc=$?
    return $rc
}

# stop_pid PID [GRACE_TENTHS]: SIGTERM, wait, SIGKILL.
stop_pid() {
    local pid=$1 grace=${2:-30} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The EXIT trap of a script whose processes all went through `bg`: stops them, removes $TMP,
# and on failure says where the partial results are ($OUT). `trap_cleanup` installs it.
cleanup_and_exit() {
    local rc=$?
    set +e
    stop_all
    rm -rf "$TMP"
    [ $rc -ne 0 ] && log "failed (exit $rc); partial results in $OUT"
    exit $rc
}
trap_cleanup() {
    trap cleanup_and_exit EXIT
    trap 'exit 130' INT TERM
}

stop_all() {
    local pid
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" 20; done
    BG_PIDS=()
}

# free_port: a TCP port free on 127.0.0.1 right now (the kernel's pick).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# free_port_run N: the first of N consecutive free TCP ports on 127.0.0.1, searched from 16653.
free_port_run() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
for base in range(16653, 30000, 16):
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}

# wait_port PORT TIMEOUT_TENTHS [PID]: wait until something listens on 127.0.0.1:PORT
# (gives up at once when PID exits).
wait_port() {
    local port=$1 n=${2:-100} pid=${3:-} i
    for ((i = 0; i < n; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

wait_file() {
    local f=$1 n=${2:-50} i
    for ((i = 0; i < n; i++)); do [ -e "$f" ] && return 0; sleep 0.1; done
    return 1
}

# need_pkg CMD DEBIAN_PACKAGE: install the package when CMD is missing.
need_pkg() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (for $1)"
    if ! apt-get install -y -q "$2" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "$2" >/dev/null 2>&1 || die "cannot install $2"
    fi
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# pipeline_toml FILE: the [shards]+[pipeline] example configuration of docs/pipeline.md.
pipeline_toml() {
    python3 - "$REPO/docs/pipeline.md" "$1" <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(re.search(r"## Example.*?```toml\n(.*?)```", doc, re.S).group(1))
PY
}

# pipeline_flows FILE: the example's flows (docs/pipeline.md), with the packet-in dispatch
# (multipath + table 250) replaced by a plain CONTROLLER output: the pipeline a single
# controller connection (os-ken) works with.
pipeline_flows_for_plain_controller() {
    python3 - "$REPO/docs/pipeline.md" "$1" <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
block = re.search(r"## Example.*?```flows\n(.*?)```", doc, re.S).group(1)
out = []
for line in block.splitlines():
    line = line.strip()
    if not line or "table=250" in line:
        continue
    line = re.sub(r"actions=multipath\([^)]*\),resubmit\(,250\)", "actions=CONTROLLER:65535", line)
    out.append(line)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
}

# A private Open vSwitch in DIR (userspace datapath). With OVS_DUMMY=1 the dummy ports of
# scripts/ovs-sandbox.sh; otherwise real system ports (veths) through --disable-system.
ovs_env() {
    export OVS_RUNDIR=$1 OVS_DBDIR=$1 OVS_LOGDIR=$1 OVS_SYSCONFDIR=$1 OVS_PKGDATADIR=/usr/share/openvswitch
}

ovs_up() {
    local dir=$1
    need_pkg ovs-vswitchd openvswitch-switch
    ovs_env "$dir"
    ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" -vconsole:off \
        --pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" --no-chdir --detach
    wait_file "$dir/db.sock" 50 || die "ovsdb-server did not start"
    ovs-vsctl --no-wait init
    local dummy=()
    [ "${OVS_DUMMY:-0}" = 1 ] && dummy=(--enable-dummy=override)
    ovs-vswitchd "unix:$dir/db.sock" "${dummy[@]}" --disable-system --disable-system-route \
        -vconsole:off --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" --no-chdir --detach
    wait_file "$dir/ovs-vswitchd.pid" 50 || die "ovs-vswitchd did not start"
}

ovs_down() {
    local dir=$1 d pid i
    [ -d "$dir" ] || return 0
    for d in ovs-vswitchd ovsdb-server; do
        [ -e "$dir/$d.pid" ] || continue
        pid=$(cat "$dir/$d.pid" 2>/dev/null) || continue
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$dir/$d.pid"
    done
}

# set_controllers BRIDGE PORT...: active controllers on 127.0.0.1, out-of-band.
set_controllers() {
    local br=$1; shift
    local targets=() p uuid
    for p in "$@"; do targets+=("tcp:127.0.0.1:$p"); done
    ovs-vsctl set-controller "$br" "${targets[@]}"
    for uuid in $(ovs-vsctl --bare --columns=_uuid list controller); do
        ovs-vsctl set controller "$uuid" connection_mode=out-of-band
    done
}

# json_get FILE KEY[.SUB...]: a value from a JSON file ("" when absent).
json_get() {
    python3 - "$@" <<'PY'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v)
except Exception:
    print("")
PY
}

# cpu_secs PID: user+system CPU seconds of PID so far ("" when gone).
cpu_secs() {
    python3 - "$1" <<'PY' 2>/dev/null || true
import os, sys
st = open(f"/proc/{sys.argv[1]}/stat").read()
f = st[st.rfind(")") + 2:].split()
print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
PY
}
