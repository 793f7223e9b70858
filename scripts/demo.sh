#!/usr/bin/env bash
# The main job: shardflow as the node agent of a real, sandboxed Open vSwitch, with real pods.
#
#  1. starts a private OVS 3.1 in a temporary folder (userspace datapath, real veth ports, no
#     bridge at all) and the shardflow daemon with NO configuration: it finds the database as
#     ovs-vsctl does ($OVS_RUNDIR), creates br-int (netdev: no kernel datapath here,
#     OpenFlow13, fail_mode=secure, one controller per shard) and watches its interfaces;
#  2. adds three pods (network namespaces) with the CNI plugin `shardflow-cni`, as kubelet
#     would: veth, addresses from host-local IPAM, the port on br-int with the pod's metadata;
#  3. opens real TCP connections between the pods (kernel stacks in the namespaces), each new
#     one decided on its first packet by the shard that owns it (embedded allow-all policy),
#     and prints their connect times; shows the flows the shards installed, the Tracker, the
#     shards' decision counts;
#  4. drives the REST API (a flow added and deleted by cookie) and shows /metrics;
#  5. checks FLOW_MODs of the codec byte for byte against OVS's own encoder;
#  6. removes a pod with CNI DEL (its port and flows go), stops the daemon with SIGTERM, removes
#     the other pods, stops OVS, and checks that no namespace, veth or port is left behind.
# Needs root (namespaces). Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh needs root (network namespaces)" >&2; exit 1; }

scripts/install-ovs.sh
missing=()
command -v ethtool >/dev/null || missing+=(ethtool)
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "== building shardflow and shardflow-cni"
cargo build --quiet --bins
SF=$PWD/target/debug/shardflow
CNI_BIN=$PWD/target/debug/shardflow-cni
HTTP=127.0.0.1:9464
BR=br-int

DIR=$(mktemp -d /tmp/shardflow-demo.XXXXXX)
TAG=$(printf '%04x' $((RANDOM)))
PODS=(a b c)
DAEMON_PID=
HOST_IFS=()
cleanup() {
    local rc=$?
    set +e
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    for p in "${PODS[@]}"; do ip netns del "demo$TAG-$p" 2>/dev/null; done
    for i in "${HOST_IFS[@]}"; do ip link del "$i" 2>/dev/null; done
    scripts/ovs-sandbox.sh down "$DIR" >/dev/null 2>&1
    [ $rc -ne 0 ] && { echo "demo failed (exit $rc); the daemon's log:"; tail -30 "$DIR/shardflow.log" 2>/dev/null; }
    rm -rf "$DIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The REST API wants a bearer token (docs/security.md): this demo hands the daemon one in
# SHARDFLOW_HTTP_TOKEN and sends it on every call.
SHARDFLOW_HTTP_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHARDFLOW_HTTP_TOKEN
http() { python3 - "$@" <<'PY'
import json, os, sys, urllib.request
method, url = sys.argv[1], "http://" + sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method,
                             headers={"Authorization": "Bearer " + os.environ["SHARDFLOW_HTTP_TOKEN"]})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read().decode()
except urllib.error.HTTPError as e:
    body = e.read().decode()
try:
    print(json.dumps(json.loads(body), indent=1))
except ValueError:
    print(body)
PY
}

echo
echo "== 1. a private Open vSwitch (real veth ports, no bridge) and the daemon with no configuration"
scripts/ovs-sandbox.sh up-real "$DIR"
eval "$(scripts/ovs-sandbox.sh env "$DIR")"
echo "   \$ OVS_RUNDIR=$DIR shardflow run      (logs in $DIR/shardflow.log)"
"$SF" run > "$DIR/shardflow.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$HTTP/healthz', timeout=1)" 2>/dev/null && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "the daemon exited"; exit 1; }
    sleep 0.1
done
ovs-vsctl --timeout=20 wait-until bridge $BR >/dev/null
SHARDS=$(http GET "$HTTP/v1/shards" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
for _ in $(seq 1 200); do
    n=$(http GET "$HTTP/v1/switches" | python3 -c "import json,sys; print(sum(1 for s in json.load(sys.stdin) if s['connections']==$SHARDS))")
    [ "$n" = 1 ] && [ "$(http GET "$HTTP/readyz")" = ready ] && break
    sleep 0.1
done
[ "$n" = 1 ] || { echo "br-int did not connect to the $SHARDS shards"; exit 1; }
echo "   the daemon made $BR: $(ovs-vsctl get bridge $BR datapath_type) datapath, protocols=$(ovs-vsctl get bridge $BR protocols), fail_mode=$(ovs-vsctl get bridge $BR fail_mode)"
echo "   controllers (one per shard): $(ovs-vsctl --bare --columns=target list controller | tr '\n' ' ')"
echo "   connected to all $SHARDS shards; /readyz: $(http GET "$HTTP/readyz")"

echo
echo "== 2. three pods added with the CNI plugin, as kubelet would (CNI 1.0.0, host-local IPAM)"
cat > "$DIR/net.json" <<JSON
{"cniVersion":"1.0.0","name":"demo","type":"shardflow-cni","bridge":"$BR","mtu":1500,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"dataDir":"$DIR/ipam"}}
JSON
cni() { # COMMAND POD
    CNI_COMMAND=$1 CNI_CONTAINERID="demo$TAG-$2" CNI_NETNS="/run/netns/demo$TAG-$2" CNI_IFNAME=eth0 \
        CNI_PATH="$(dirname "$CNI_BIN"):/usr/lib/cni" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-$2" \
        "$CNI_BIN" < "$DIR/net.json"
}
declare -A IP
for p in "${PODS[@]}"; do
    ip netns add "demo$TAG-$p"
    cni ADD "$p" > "$DIR/$p.json" || { echo "CNI ADD pod-$p failed: $(cat "$DIR/$p.json")"; exit 1; }
    read -r ip hostif < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(r["ips"][0]["address"].split("/")[0], [i["name"] for i in r["interfaces"] if not i.get("sandbox")][0])' "$DIR/$p.json")
    IP[$p]=$ip
    HOST_IFS+=("$hostif")
    echo "   pod-$p: netns demo$TAG-$p, eth0 ${IP[$p]}, host veth $hostif -> OpenFlow port $(ovs-vsctl get interface "$hostif" ofport)"
done
echo "   what the plugin wrote for pod-a (Interface external_ids, read by the daemon):"
echo "     $(ovs-vsctl get interface "${HOST_IFS[0]}" external_ids)"

echo
echo "== 3. real TCP connections between the pods (each new one decided on its first packet)"
cat > "$DIR/probe.py" <<'PY'
import socket, sys, time
if sys.argv[1] == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], 8080)); s.listen(64); s.settimeout(120)
    print("listening", flush=True)
    while True:
        try:
            c, _ = s.accept()
        except socket.timeout:
            break
        data = c.recv(64); c.sendall(data); c.close()
else:
    dst, n = sys.argv[2], int(sys.argv[3])
    times = []
    for _ in range(n):
        c = socket.socket(); c.settimeout(5)
        t0 = time.perf_counter()
        c.connect((dst, 8080))
        times.append((time.perf_counter() - t0) * 1e6)
        c.sendall(b"hi"); assert c.recv(64) == b"hi"
        c.close()
    print(" ".join("%.0f" % t for t in times))
PY
SERVERS=()
for p in "${PODS[@]}"; do
    ip netns exec "demo$TAG-$p" python3 "$DIR/probe.py" server "${IP[$p]}" > "$DIR/server-$p.log" 2>&1 &
    SERVERS+=($!)
done
for p in "${PODS[@]}"; do
    for _ in $(seq 50); do grep -q listening "$DIR/server-$p.log" && break; sleep 0.1; done
done
for pair in a:b b:c c:a a:c; do
    src=${pair%:*} dst=${pair#*:}
    t=$(ip netns exec "demo$TAG-$src" python3 "$DIR/probe.py" client "${IP[$dst]}" 5) \
        || { echo "   pod-$src -> pod-$dst: FAILED"; exit 1; }
    echo "   pod-$src -> pod-$dst:8080, 5 connections (echo checked), connect times in us: $t"
done
echo "   (the first of a pair includes ARP; every connection is a new one to conntrack)"
echo "  the flows the shards installed for pod-a -> pod-b (table 3):"
ovs-ofctl -O OpenFlow13 dump-flows $BR "table=3,tcp,nw_src=${IP[a]},nw_dst=${IP[b]}" --no-stats | head -2 | sed 's/^/   /'
ovs-ofctl -O OpenFlow13 dump-flows $BR "table=3,tcp,nw_src=${IP[b]},nw_dst=${IP[a]}" --no-stats | head -2 | sed 's/^/   /'
echo "   table 3 holds $(ovs-ofctl -O OpenFlow13 dump-flows $BR table=3 --no-stats | grep -c 'tp_') connection flows"
echo "  br-int's flows per table:"
ovs-ofctl -O OpenFlow13 dump-flows $BR --no-stats | sed -E 's/.*table=([0-9]+).*/\1/; t; s/.*/0/' | sort -n | uniq -c \
    | awk '{printf "   table %3s: %s flows\n", $2, $1}'
http GET "$HTTP/v1/shards" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    print("   shard %d: %d packet-ins, decided %d connections, decision p50 %.0f us" % (
        s["shard"], s["packet_ins"], len(s["connections"]), s["decision_p50_us"]))'
echo "  the Tracker (GET /v1/tracker): addresses learned from traffic, and traffic paths"
http GET "$HTTP/v1/tracker" | python3 -c '
import json, sys
t = json.load(sys.stdin)
for a in t["addresses"]:
    if ":" not in a["ip"]:
        print("   %-12s %s on port %s" % (a["ip"], a["mac"], a["port"]))
print("   %d paths, stats %s" % (len(t["paths"]), json.dumps(t["stats"])))'

echo
echo "== 4. REST: add a flow to br-int, read it back, delete it by cookie; /metrics"
DPID=$(http GET "$HTTP/v1/switches" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['dpid'])")
http POST "$HTTP/v1/switches/$DPID/flows?command=add" "table=3,priority=100,cookie=0xf00,tcp,nw_src=${IP[a]},tp_dst=443,actions=drop" | sed 's/^/   /'
ovs-ofctl -O OpenFlow13 dump-flows $BR table=3,cookie=0xf00/-1 --no-stats | sed 's/^/   ovs: /'
http DELETE "$HTTP/v1/switches/$DPID/flows?cookie=0xf00&cookie_mask=0xff000000ffff" > /dev/null
echo "   flows with cookie 0xf00 left: $(ovs-ofctl -O OpenFlow13 dump-flows $BR cookie=0xf00/-1 --no-stats | wc -l)"
echo "  /metrics (excerpt, non-zero):"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://$HTTP/metrics').read().decode())" \
    | grep -E '^shardflow_(switch_connections|decisions_total|packet_in_decision_seconds_count)' | grep -v ' 0$' | sed 's/^/   /'

echo
echo "== 5. the codec: shardflow's FLOW_MODs against OVS's own encoder (ovs-ofctl -mmmmm parse-flow)"
FLOWS=(
  'table=0,priority=200,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,zone=2,nat(dst=10.0.0.5:8080)),resubmit(,3)'
  'table=15,priority=10,udp,actions=learn(table=6,idle_timeout=60,eth_type=0x800,nw_proto=17,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_UDP_SRC[]=NXM_OF_UDP_DST[],output:NXM_OF_IN_PORT[]),output:2'
  'table=3,priority=100,ipv6,ipv6_src=fd00::/64,ct_state=+trk+est,actions=write_metadata:0x5/0xff,goto_table:6'
)
for f in "${FLOWS[@]}"; do
    ours=$("$SF" flow encode --xid 1 "$f")
    theirs=$(ovs-ofctl -O OpenFlow13 -mmmmm parse-flow "$f" | grep -E '^[0-9a-f]{8}  ' \
        | sed -E 's/^[0-9a-f]{8}  //; s/\|.*$//; s/[- ]//g' | tr -d '\n')
    [ "$ours" = "$theirs" ] && echo "   identical ($(( ${#ours} / 2 )) bytes): ${f:0:80}..." || { echo "   DIFFERENT: $f"; exit 1; }
done

echo
echo "== 6. CNI DEL, SIGTERM, and nothing left behind"
cni DEL c > /dev/null
echo "   CNI DEL pod-c: port ${HOST_IFS[2]} on $BR: $(ovs-vsctl list-ports $BR | grep -cx "${HOST_IFS[2]}" || true), veth: $(ip link show "${HOST_IFS[2]}" >/dev/null 2>&1 && echo present || echo gone)"
for _ in $(seq 50); do
    ovs-ofctl -O OpenFlow13 dump-flows $BR --no-stats | grep -qw "${IP[c]}" || break
    sleep 0.1
done
echo "   flows naming ${IP[c]} left: $(ovs-ofctl -O OpenFlow13 dump-flows $BR --no-stats | grep -cw "${IP[c]}" || true)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "   daemon exited 0 on SIGTERM" || { echo "   daemon exited $?"; exit 1; }
DAEMON_PID=
for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
for p in a b; do cni DEL "$p" > /dev/null; done
for p in "${PODS[@]}"; do ip netns del "demo$TAG-$p"; done
left_ports=$(ovs-vsctl list-ports $BR | wc -l)
scripts/ovs-sandbox.sh down "$DIR" > /dev/null
left_ns=$(ip netns list | grep -c "demo$TAG-" || true)
left_if=0
for i in "${HOST_IFS[@]}"; do ip link show "$i" >/dev/null 2>&1 && left_if=$((left_if + 1)); done
echo "   left behind: $left_ports ports on $BR, $left_ns network namespaces, $left_if veths"
[ "$left_ports$left_ns$left_if" = 000 ] || { echo "   something was left behind"; exit 1; }
echo "== done"
