#!/usr/bin/env bash
# The real first packet: TCP connect time between two pods (network namespaces, veth pairs)
# through a userspace-datapath Open vSwitch, for:
#   A  shardflow (release binary, the docs/pipeline.md configuration, embedded allow-all
#      policy) deciding every new connection: SYN -> packet-in -> 2 FLOW_MODs + PACKET_OUT;
#   R  the same with `pipeline.first_packet = "resume"`: the pipeline pauses at the controller
#      (NXT_PACKET_IN2), 2 FLOW_MODs, then NXT_RESUME continues it;
#   L  shardflow with no [pipeline] (the zero-config pipeline: learning ports, allow-all), the
#      same pods plugged by this script (--variants ALB...; not in the default set);
#   B  the same bridge with one `actions=NORMAL` flow and no controller (the floor);
#   C  os-ken (perf/osken, eventlet hub) on the same pipeline, its table-0 and table-3 misses
#      sent to it (skip with --no-osken).
# With --cni (issue 8: real pods, no configuration), instead:
#   Z  shardflow with no configuration but where OVSDB is ([node] ovsdb): the node agent creates
#      br-int, the pods are added by target/release/shardflow-cni (host-local IPAM, Debian's
#      containernetworking-plugins), every new connection decided on its first packet by the
#      embedded allow-all policy;
#   B  then the same br-int, the daemon stopped, its controllers removed, one NORMAL flow.
#
#   perf/first-packet.sh [-n CONNECTIONS] [--out DIR] [--no-osken] [--variants ARBC] [--shards N]
#   perf/first-packet.sh --cni [-n CONNECTIONS] [--out DIR] [--shards N]
#
# Pod 1 = 10.244.1.2 (port 2), pod 2 = 10.244.1.4 (port 4), with the MACs of the docs example
# (the pipeline's anti-spoofing flows check them), static ARP entries inside the namespaces;
# the gateway port 3 is a veth whose other end stays in the host, unused. pod 1 connects N
# times (default 1000) to a listener in pod 2, one connection at a time, each from a fresh
# source port (so each is a new connection to conntrack and a packet-in to the controller),
# and records time.perf_counter_ns() around connect(): SYN sent -> SYN-ACK received.
# Prints p50/p90/p99/max per variant and writes DIR/first-packet.{json,md}.
# Needs root (namespaces). Everything it creates is removed on exit, failure included.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=1000
CNI=0
OUT=
VARIANTS=ARBC
SHARDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-osken) VARIANTS=${VARIANTS//C/}; shift ;;
        --variants) VARIANTS=$2; shift 2 ;;
        --shards) SHARDS=$2; shift 2 ;;
        --cni) CNI=1; shift ;;
        -h|--help) sed -n "2,30p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
[ -x "$SF" ] || die "$SF missing: cargo build --release"
if [ "$CNI" = 1 ]; then
    VARIANTS=ZB
    CNI_BIN=$(dirname "$SF")/shardflow-cni
    [ -x "$CNI_BIN" ] || die "$CNI_BIN missing: cargo build --release"
    [ -x /usr/lib/cni/host-local ] || need_pkg /usr/lib/cni/host-local containernetworking-plugins
fi
need_pkg ethtool ethtool
need_pkg ip iproute2
OUT=${OUT:-$PERF_DIR/results/first-packet-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d /tmp/sf-first-packet.XXXXXX)
TAG=$(printf '%04x' $((RANDOM)))
NS1=fp$TAG-pod1
NS2=fp$TAG-pod2
V2=fp${TAG}p2   # host side of pod 1 (OpenFlow port 2)
V4=fp${TAG}p4   # host side of pod 2 (OpenFlow port 4)
VG=fp${TAG}g3   # gateway port 3
VGP=fp${TAG}g3x # its peer, left in the host

cleanup() {
    local rc=$?
    set +e
    stop_all
    ovs_down "$TMP"
    ip netns del "$NS1" 2>/dev/null
    ip netns del "$NS2" 2>/dev/null
    ip link del "$V2" 2>/dev/null
    ip link del "$V4" 2>/dev/null
    ip link del "$VG" 2>/dev/null
    mkdir -p "$OUT/logs" && cp "$TMP"/*.log "$TMP"/*table3.txt "$TMP"/*table250.txt "$TMP"/*.toml "$OUT/logs/" 2>/dev/null
    [ $rc -ne 0 ] && log "failed (exit $rc); logs kept in $OUT/logs"
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$SF" "$TMP/shardflow"  # a private copy: a concurrent cargo build must not swap it
SF=$TMP/shardflow
if [ "$CNI" = 1 ]; then cp "$CNI_BIN" "$TMP/shardflow-cni"; CNI_BIN=$TMP/shardflow-cni; fi
BR=br0
IP1=10.244.1.2
IP2=10.244.1.4

# ---- the probe: listener and client, run inside the namespaces
cat >"$TMP/probe.py" <<'PY'
import json, socket, sys, time
role = sys.argv[1]
if role == "server":
    # accept and close, until killed or idle for 60 s
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3])))
    s.listen(1024)
    s.settimeout(60)
    print("listening", flush=True)
    while True:
        try:
            c, _ = s.accept()
        except socket.timeout:
            break
        c.close()
else:
    src, dst, port, n, first_sport, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
    times, failures, errors = [], 0, {}
    for i in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close: no TIME_WAIT
        c.bind((src, first_sport + i))
        c.settimeout(5)
        t0 = time.perf_counter_ns()
        try:
            c.connect((dst, port))
            times.append((time.perf_counter_ns() - t0) / 1000.0)
        except OSError as e:
            failures += 1
            errors[str(e)] = errors.get(str(e), 0) + 1
        c.close()
        time.sleep(0.002)
    json.dump({"connect_us": times, "failures": failures, "errors": errors}, open(out, "w"))
PY

# ---- OVS, pods, ports
log "starting a private Open vSwitch (userspace datapath, real veth ports) in $TMP"
ovs_up "$TMP"
if [ "$CNI" = 0 ]; then
    ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev protocols=OpenFlow13 fail_mode=secure \
        other_config:datapath-id=0000000000000001

    pod() { # NS HOSTIF OFPORT IP MAC PEER_IP PEER_MAC
        local ns=$1 hif=$2 ofport=$3 ip=$4 mac=$5 pip=$6 pmac=$7
        ip netns add "$ns"
        ip link add "$hif" type veth peer name eth0 netns "$ns"
        ip -n "$ns" link set eth0 address "$mac"
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        ip link set "$hif" up
        ethtool -K "$hif" tx off >/dev/null
        ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
        ip -n "$ns" neigh replace "$pip" lladdr "$pmac" dev eth0 nud permanent
        ovs-vsctl add-port br0 "$hif" -- set interface "$hif" ofport_request="$ofport"
    }
    pod "$NS1" "$V2" 2 10.244.1.2 0a:58:0a:f4:01:02 10.244.1.4 0a:58:0a:f4:01:04
    pod "$NS2" "$V4" 4 10.244.1.4 0a:58:0a:f4:01:04 10.244.1.2 0a:58:0a:f4:01:02
    ip link add "$VG" type veth peer name "$VGP"
    ip link set "$VG" up; ip link set "$VGP" up
    ovs-vsctl add-port br0 "$VG" -- set interface "$VG" ofport_request=3
    ovs-vsctl --timeout=10 wait-until interface "$V2" ofport=2 >/dev/null
    ovs-vsctl --timeout=10 wait-until interface "$V4" ofport=4 >/dev/null
else
    BR=br-int
    # The daemon first: it makes br-int (controllers = its shards) before any pod exists.
    printf '[shards]\ncount = %s\n\n[node]\novsdb = "unix:%s/db.sock"\n' "$SHARDS" "$TMP" >"$TMP/shardflow-Z.toml"
    ZBASE=$(free_port_run "$SHARDS")
    ZHTTP=127.0.0.1:$(free_port)
    # --ovsdb: lib.sh turns node management off for the other benchmarks (a flag beats it).
    bg "$TMP/shardflow-Z.log" "$SF" run --config "$TMP/shardflow-Z.toml" --ovsdb "unix:$TMP/db.sock" \
        --base-port "$ZBASE" --http "$ZHTTP" --log-level warn
    ZPID=$BG_PID
    wait_port "$ZBASE" 100 "$ZPID" || die "shardflow did not listen on $ZBASE (see logs/shardflow-Z.log)"
    ovs-vsctl --timeout=20 wait-until bridge br-int >/dev/null || die "the daemon did not create br-int"
    cat >"$TMP/cni.json" <<JSON
{"cniVersion":"1.0.0","name":"fp$TAG","type":"shardflow-cni","bridge":"br-int","mtu":1500,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"dataDir":"$TMP/ipam"}}
JSON
    cni_add() { # NS NAME -> the ADD result in $TMP/NAME.json
        ip netns add "$1"
        CNI_COMMAND=ADD CNI_CONTAINERID="$1" CNI_NETNS=/run/netns/$1 CNI_IFNAME=eth0 \
            CNI_PATH="$TMP:/usr/lib/cni" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=perf;K8S_POD_NAME=$2" OVS_RUNDIR=$TMP \
            "$CNI_BIN" <"$TMP/cni.json" >"$TMP/$2.json" || die "CNI ADD $2: $(cat "$TMP/$2.json")"
    }
    cni_add "$NS1" pod1
    cni_add "$NS2" pod2
    field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
i=[k for k,x in enumerate(r["interfaces"]) if x.get("sandbox")][0]
print(r["ips"][0]["address"].split("/")[0] if sys.argv[2]=="ip" else r["interfaces"][i]["mac"])' "$TMP/$1.json" "$2"; }
    IP1=$(field pod1 ip); IP2=$(field pod2 ip)
    # Static neighbours, as in the static variants: the connect time is the TCP decision alone.
    ip -n "$NS1" neigh replace "$IP2" lladdr "$(field pod2 mac)" dev eth0 nud permanent
    ip -n "$NS2" neigh replace "$IP1" lladdr "$(field pod1 mac)" dev eth0 nud permanent
    log "pods added by shardflow-cni: pod1 $IP1, pod2 $IP2"
fi

SERVER_PORT=8080
bg "$TMP/server.log" ip netns exec "$NS2" python3 "$TMP/probe.py" server "$IP2" $SERVER_PORT
SERVER_PID=$BG_PID
for _ in $(seq 50); do grep -q listening "$TMP/server.log" && break; sleep 0.1; done

reset_bridge() {
    ovs-vsctl del-controller $BR
    ovs-ofctl -O OpenFlow13 del-flows $BR
    ovs-appctl dpctl/flush-conntrack >/dev/null 2>&1 || true
}

SPORT=20000
measure() { # VARIANT
    local v=$1
    log "variant $v: $N connections pod1 -> pod2:$SERVER_PORT"
    run_wait "$TMP/client-$v.log" ip netns exec "$NS1" timeout $((N / 10 + 120)) python3 "$TMP/probe.py" client \
        "$IP1" "$IP2" $SERVER_PORT "$N" "$SPORT" "$TMP/$v.json" \
        || die "variant $v: the client failed ($(tail -1 "$TMP/client-$v.log"))"
    SPORT=$((SPORT + N + 10))
}

# ---- A / R: shardflow, first_packet = "packet_out" (A) or "resume" (R)
curl_metrics() { python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/metrics", timeout=5).read().decode())' "$1"; }
shardflow_variant() { # VARIANT FIRST_PACKET
    local v=$1 fp=$2 i
    reset_bridge
    pipeline_toml "$TMP/shardflow-$v.toml"
    sed -i "s/^count = .*/count = $SHARDS/" "$TMP/shardflow-$v.toml"
    # the key only when it is not the default, so that A runs with binaries that predate it
    if [ "$fp" = zero ]; then
        # No [pipeline]: the zero-config pipeline, learning ports, allow-all.
        printf '[shards]\ncount = %s\n' "$SHARDS" >"$TMP/shardflow-$v.toml"
    elif [ "$fp" != packet_out ]; then
        sed -i "/^\[pipeline\]\$/a first_packet = \"$fp\"" "$TMP/shardflow-$v.toml"
    fi
    local base http
    base=$(free_port_run "$SHARDS")
    http=127.0.0.1:$(free_port)
    bg "$TMP/shardflow-$v.log" "$SF" run --config "$TMP/shardflow-$v.toml" --base-port "$base" --http "$http" --log-level warn
    local pid=$BG_PID
    wait_port "$base" 100 "$pid" || die "shardflow did not listen on $base (see logs/shardflow-$v.log)"
    local ports=()
    for ((i = 0; i < SHARDS; i++)); do ports+=($((base + i))); done
    set_controllers br0 "${ports[@]}"
    # ready when the pipeline is on the bridge (table 250 dispatch flows for every shard)
    for _ in $(seq 100); do
        [ "$(ovs-ofctl -O OpenFlow13 dump-flows br0 table=250 2>/dev/null | grep -c controller)" -ge "$SHARDS" ] && break
        sleep 0.1
    done
    [ "$(ovs-ofctl -O OpenFlow13 dump-flows br0 table=250 | grep -c controller)" -ge "$SHARDS" ] \
        || die "shardflow did not install the pipeline (variant $v)"
    ovs-ofctl -O OpenFlow13 dump-flows br0 table=250 >"$TMP/$v-table250.txt"
    sleep 0.5
    measure "$v"
    ovs-ofctl -O OpenFlow13 dump-flows br0 table=3 >"$TMP/$v-table3.txt"
    grep -c "priority=100" "$TMP/$v-table3.txt" >"$TMP/$v.flows" || true
    curl_metrics "$http" | grep -E '^shardflow_(decisions_total|packet_in_decision_seconds)' >"$TMP/$v-metrics.txt" || true
    # The shards' own decision histograms (packet-in read -> answer written), p50 and p99.
    python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/v1/shards", timeout=5).read().decode())' \
        "$http" >"$TMP/$v-shards.json" 2>/dev/null || true
    stop_pid "$pid"
}
# ---- Z: the zero-config daemon (started above, before the pods)
if [[ $VARIANTS == *Z* ]]; then
    for _ in $(seq 200); do
        python3 -c 'import sys,urllib.request; urllib.request.urlopen("http://"+sys.argv[1]+"/readyz", timeout=2)' "$ZHTTP" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    measure Z
    ovs-ofctl -O OpenFlow13 dump-flows br-int table=3 >"$TMP/Z-table3.txt"
    grep -c "priority=100" "$TMP/Z-table3.txt" >"$TMP/Z.flows" || true
    curl_metrics "$ZHTTP" | grep -E '^shardflow_(decisions_total|packet_in_decision_seconds)' >"$TMP/Z-metrics.txt" || true
    python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/v1/shards", timeout=5).read().decode())' \
        "$ZHTTP" >"$TMP/Z-shards.json" 2>/dev/null || true
    stop_pid "$ZPID"
fi
if [[ $VARIANTS == *A* ]]; then shardflow_variant A packet_out; fi
if [[ $VARIANTS == *L* ]]; then
    # Learning ports learn hosts from ARP (the Tracker): no static neighbours here.
    ip -n "$NS1" neigh del "$IP2" dev eth0 2>/dev/null || true
    ip -n "$NS2" neigh del "$IP1" dev eth0 2>/dev/null || true
    shardflow_variant L zero
fi
if [[ $VARIANTS == *R* ]]; then shardflow_variant R resume; fi

# ---- B: NORMAL, no controller
if [[ $VARIANTS == *B* ]]; then
    reset_bridge
    ovs-ofctl -O OpenFlow13 add-flow $BR "priority=0,actions=NORMAL"
    sleep 0.3
    measure B
fi

# ---- C: os-ken
if [[ $VARIANTS == *C* ]]; then
    "$PERF_DIR/osken/setup.sh"
    reset_bridge
    OPORT=$(free_port)
    bg "$TMP/osken.log" "$VENV/bin/python" "$PERF_DIR/osken/run_app.py" \
        --ofp-listen-host 127.0.0.1 --ofp-tcp-listen-port "$OPORT"
    wait_port "$OPORT" 150 || die "os-ken did not listen (see $TMP/osken.log)"
    set_controllers br0 "$OPORT"
    for _ in $(seq 100); do grep -q "switch 0000000000000001 connected" "$TMP/osken.log" && break; sleep 0.1; done
    grep -q "switch 0000000000000001 connected" "$TMP/osken.log" || die "the bridge did not connect to os-ken"
    sleep 0.5
    # The pipeline after the handshake (a controller change may flush the table), its
    # table-0 and table-3 misses to the controller: where the old design's packet-ins came from.
    pipeline_flows_for_plain_controller "$TMP/pipeline-plain.flows"
    ovs-ofctl -O OpenFlow13 add-flows br0 "$TMP/pipeline-plain.flows"
    n_flows=$(ovs-ofctl -O OpenFlow13 dump-flows br0 | grep -c cookie=)
    [ "$n_flows" -ge 30 ] || die "pipeline not on the bridge for os-ken ($n_flows flows)"
    sleep 0.5
    measure C
    ovs-ofctl -O OpenFlow13 dump-flows br0 table=3 >"$TMP/C-table3.txt"
    grep -c "priority=100" "$TMP/C-table3.txt" >"$TMP/C.flows" || true
fi

# ---- report
python3 - "$TMP" "$OUT" "$N" "$SHARDS" <<'PY'
import json, os, sys
tmp, out, n, shards = sys.argv[1:5]
names = {"L": f"shardflow ({shards} shards, fanout), no [pipeline]: zero-config learning ports, allow-all",
         "Z": f"shardflow ({shards} shards, fanout), no configuration: br-int made by the node agent, pods by shardflow-cni, allow-all",
         "A": f"shardflow ({shards} shards, fanout, pipeline, allow-all), first_packet = packet_out",
         "R": f"shardflow, the same, first_packet = resume (NXT_PACKET_IN2 pause + NXT_RESUME)",
         "B": "no controller (actions=NORMAL, no conntrack)",
         "C": "os-ken (eventlet hub, same pipeline, PACKET_OUT with the flow's actions)"}
def flows(k):
    try:
        return int(open(os.path.join(tmp, k + ".flows")).read().strip() or 0)
    except Exception:
        return None
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")
res, rows = {}, []
for k in "ZLARBC":
    f = os.path.join(tmp, k + ".json")
    if not os.path.exists(f):
        continue
    d = json.load(open(f))
    t = d["connect_us"]
    if not t:
        print(f"variant {k}: no connection succeeded: {d.get('errors')}", file=sys.stderr)
        continue
    r = {"variant": names[k], "connections": len(t), "failures": d["failures"],
         "p50_us": pct(t, 50), "p90_us": pct(t, 90), "p99_us": pct(t, 99), "max_us": max(t) if t else None,
         "mean_us": sum(t) / len(t) if t else None}
    r["table3_flows_after"] = flows(k)
    res[k] = r
    rows.append(f"| {k} | {names[k]} | {len(t)} | {d['failures']} | {r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | {r['max_us']:.0f} |")
json.dump(res, open(os.path.join(out, "first-packet.json"), "w"), indent=2)
md = ["# First packet: TCP connect time pod1 -> pod2 through OVS (userspace datapath, veth ports)", "",
      f"{n} connections per variant, one at a time, each from a fresh source port (a new connection: "
      "with a controller, its SYN is a packet-in). Time = connect() (SYN sent -> SYN-ACK back), in microseconds.", "",
      "| | variant | connections | failures | p50 | p90 | p99 | max |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
md += rows
md += ["", "Connection flows in table 3 afterwards: " +
       ", ".join(f"{k} {res[k]['table3_flows_after']}" for k in res if k != "B") +
       f" (2 per connection expected: {2 * int(n)})."]
if "B" in res:
    md.append("Controller cost at p50 over the floor (B): " +
              "; ".join(f"{k} +{res[k]['p50_us'] - res['B']['p50_us']:.0f} us" for k in res if k != "B") + ".")
md.append("")
md.append("B has no conntrack and no pipeline, so A/R/C - B is the controller's round trip plus the "
          "pipeline's conntrack and recirculations for the first packet; later packets of a connection "
          "never reach a controller in any variant.")
open(os.path.join(out, "first-packet.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
for v in Z L A R; do
    cp "$TMP/$v-metrics.txt" "$OUT/shardflow-$v-metrics.txt" 2>/dev/null || true
    cp "$TMP/$v-shards.json" "$OUT/shardflow-$v-shards.json" 2>/dev/null || true
done
log "results in $OUT"
