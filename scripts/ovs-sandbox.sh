#!/usr/bin/env bash
# A private, sandboxed Open vSwitch (userspace datapath, dummy ports) in a folder of its own.
# Many can run side by side, one per folder.
#
#   scripts/ovs-sandbox.sh up DIR [BRIDGE...]     start ovsdb-server + ovs-vswitchd in DIR and add
#                                                 bridges (default br0) with dummy ports p1, p2
#   scripts/ovs-sandbox.sh controllers DIR BRIDGE PORT [PORT...]
#                                                 point BRIDGE at tcp:127.0.0.1:PORT (one per shard)
#   scripts/ovs-sandbox.sh restart-vswitchd DIR   stop ovs-vswitchd and start it again on the same
#                                                 database (its flow tables start empty)
#   scripts/ovs-sandbox.sh stop-ovsdb DIR         stop ovsdb-server (ovs-vswitchd keeps running)
#   scripts/ovs-sandbox.sh start-ovsdb DIR        start ovsdb-server again on the same database
#   scripts/ovs-sandbox.sh env DIR                print the exports that make ovs-* tools use DIR
#   scripts/ovs-sandbox.sh down DIR               stop both daemons
#
# Bridges are OpenFlow13-only, fail_mode=secure, datapath-id 000000000000000N (N = bridge index),
# so nothing forwards unless a controller (or a test) installs flows.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

env_for() {
    local dir
    dir=$(cd "$1" && pwd)
    echo "export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir OVS_PKGDATADIR=/usr/share/openvswitch"
}

need_ovs() {
    command -v ovs-vswitchd >/dev/null || {
        echo "ovs-vswitchd not found: install Open vSwitch (apt-get install -y openvswitch-switch)" >&2
        exit 69
    }
}

wait_for() { # FILE TIMEOUT_TENTHS
    local i=0
    while [ ! -e "$1" ]; do
        i=$((i + 1))
        [ "$i" -gt "$2" ] && { echo "timed out waiting for $1" >&2; return 1; }
        sleep 0.1
    done
}

up() {
    need_ovs
    local dir=$1; shift
    mkdir -p "$dir"
    eval "$(env_for "$dir")"
    dir=$OVS_RUNDIR
    [ -e "$dir/ovsdb-server.pid" ] && down "$dir" >/dev/null 2>&1 || true
    rm -f "$dir/conf.db" "$dir"/*.pid "$dir"/*.ctl "$dir/db.sock"
    ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    start_ovsdb "$dir"
    ovs-vsctl --db="unix:$dir/db.sock" --no-wait init
    start_vswitchd "$dir"
    local bridges=("$@")
    [ ${#bridges[@]} -eq 0 ] && bridges=(br0)
    local n=0 br
    for br in "${bridges[@]}"; do
        n=$((n + 1))
        ovs-vsctl --db="unix:$dir/db.sock" add-br "$br" -- set bridge "$br" datapath_type=netdev \
            protocols=OpenFlow13 fail_mode=secure other_config:datapath-id=$(printf '%016x' "$n") \
            -- add-port "$br" "$br-p1" -- set interface "$br-p1" type=dummy ofport_request=1 \
                options:tx_pcap="$dir/$br-p1-tx.pcap" \
            -- add-port "$br" "$br-p2" -- set interface "$br-p2" type=dummy ofport_request=2 \
                options:tx_pcap="$dir/$br-p2-tx.pcap"
    done
    echo "ovs sandbox up in $dir: bridges ${bridges[*]}"
}

controllers() {
    local dir=$1 br=$2; shift 2
    eval "$(env_for "$dir")"
    local targets=() p
    for p in "$@"; do targets+=("tcp:127.0.0.1:$p"); done
    ovs-vsctl --db="unix:$OVS_RUNDIR/db.sock" set-controller "$br" "${targets[@]}"
    # out-of-band: no in-band rules and no in-band warnings every second.
    local uuid
    for uuid in $(ovs-vsctl --db="unix:$OVS_RUNDIR/db.sock" --bare --columns=_uuid list controller); do
        ovs-vsctl --db="unix:$OVS_RUNDIR/db.sock" set controller "$uuid" connection_mode=out-of-band
    done
}

start_ovsdb() {
    local dir=$1
    rm -f "$dir/db.sock"
    ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" -vconsole:off \
        --pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" --no-chdir --detach
    wait_for "$dir/db.sock" 50
}

stop_ovsdb() {
    local dir=$1 pid
    if [ -e "$dir/ovsdb-server.pid" ]; then
        pid=$(cat "$dir/ovsdb-server.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$dir/ovsdb-server.pid" "$dir/db.sock"
    fi
}

start_vswitchd() {
    local dir=$1
    ovs-vswitchd "unix:$dir/db.sock" --enable-dummy=override --disable-system --disable-system-route \
        -vconsole:off --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" --no-chdir --detach
    wait_for "$dir/ovs-vswitchd.pid" 50
}

restart_vswitchd() {
    local dir pid
    dir=$(cd "$1" && pwd)
    eval "$(env_for "$dir")"
    if [ -e "$dir/ovs-vswitchd.pid" ]; then
        pid=$(cat "$dir/ovs-vswitchd.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$dir/ovs-vswitchd.pid"
    fi
    start_vswitchd "$dir"
    # The bridges come back from the database; wait until ovs-vswitchd answers for them.
    ovs-vsctl --db="unix:$dir/db.sock" --timeout=10 wait-until bridge br0 >/dev/null 2>&1 || true
    echo "ovs-vswitchd restarted in $dir"
}

down() {
    local dir=$1 d pid
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    for d in ovs-vswitchd ovsdb-server; do
        if [ -e "$dir/$d.pid" ]; then
            pid=$(cat "$dir/$d.pid")
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$dir/$d.pid"
        fi
    done
    echo "ovs sandbox in $dir stopped"
}

[ $# -ge 2 ] || usage
cmd=$1; shift
case "$cmd" in
    up) up "$@" ;;
    controllers) [ $# -ge 3 ] || usage; controllers "$@" ;;
    env) env_for "$1" ;;
    restart-vswitchd) restart_vswitchd "$1" ;;
    stop-ovsdb) stop_ovsdb "$(cd "$1" && pwd)"; echo "ovsdb-server in $1 stopped" ;;
    start-ovsdb) eval "$(env_for "$1")"; start_ovsdb "$OVS_RUNDIR"; echo "ovsdb-server in $1 started" ;;
    down) down "$1" ;;
    *) usage ;;
esac
