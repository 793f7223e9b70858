#!/usr/bin/env bash
# The main job: shardflow against a real, sandboxed Open vSwitch.
#
#  1. starts a private OVS 3.1 (userspace datapath, dummy ports, everything in a temporary folder)
#     with two bridges, and the shardflow daemon: one shard per core, OpenFlow on 127.0.0.1:6653..,
#     HTTP on 127.0.0.1:9464, the default pipeline of docs/pipeline.md (two pods on ports 2 and 4,
#     uplink 1, gateway 3, tunnel 5) and a policy file (allow by default, deny pod 4 -> pod 2
#     port 22, a service 10.96.0.10:80 -> pod 2:8080); `shardflow run` without a policy uses the
#     embedded default (allow all);
#  2. points each bridge at one controller port per shard and shows the switches connected and
#     the pipeline the daemon installed (one ONF bundle per bridge, resynced on every reconnect);
#  3. opens 10 TCP connections from pod 4 to pod 2: each first packet reaches the owning shard,
#     which installs the forward and reverse flows (conntrack zone 1) and sends the packet on;
#     the replies need no controller; shows the flows, the delivered packets, conntrack, and
#     which shard decided each connection (both directions on one shard);
#  4. a TCP connection from the uplink learns its return flow into table 6 (no controller);
#  5. drives the REST API (add, delete by cookie, a refused flow with the switch's error), /metrics;
#  6. checks FLOW_MODs of the codec byte for byte against OVS's own encoder;
#  7. stops the daemon with SIGTERM (flows stay on the bridge: fail_mode=secure).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-ovs.sh
echo "== building shardflow"
cargo build --quiet --bin shardflow
SF=$PWD/target/debug/shardflow
HTTP=127.0.0.1:9464

DIR=$(mktemp -d /tmp/shardflow-demo.XXXXXX)
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
    scripts/ovs-sandbox.sh down "$DIR" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
scripts/ovs-sandbox.sh up "$DIR" br0 br1
eval "$(scripts/ovs-sandbox.sh env "$DIR")"
for br in br0 br1; do
    for p in 3 4 5; do
        ovs-vsctl add-port $br $br-p$p -- set interface $br-p$p type=dummy ofport_request=$p \
            options:tx_pcap="$DIR/$br-p$p-tx.pcap"
    done
done
# The example configuration of docs/pipeline.md (two shards here, the pipeline, embedded policy).
python3 - "$DIR/shardflow.toml" <<'PY'
import re, sys
doc = open("docs/pipeline.md").read()
open(sys.argv[1], "w").write(re.search(r"```toml\n(.*?)```", doc, re.S).group(1))
PY
cat > "$DIR/policy.toml" <<'TOML'
version = 1
default = "allow"
[[rule]]
action = "deny"
src = "10.244.1.4"
dst = "10.244.1.2"
protocol = "tcp"
ports = "22"
[[service]]
vip = "10.96.0.10"
port = 80
protocol = "tcp"
endpoints = [ { ip = "10.244.1.2", port = 8080, weight = 1 } ]
TOML
printf '\n[policy]\nsource = "file"\nfile = "%s"\n' "$DIR/policy.toml" >> "$DIR/shardflow.toml"
pcap_count() { python3 -c "
import struct, sys
d = open(sys.argv[1], 'rb').read(); i, n = 24, 0
while i + 16 <= len(d):
    i += 16 + struct.unpack('<I', d[i+8:i+12])[0]; n += 1
print(n)" "$1"; }

# The REST API wants a bearer token (docs/security.md): this demo hands the daemon one in
# SHARDFLOW_HTTP_TOKEN and sends it on every call.
SHARDFLOW_HTTP_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHARDFLOW_HTTP_TOKEN
# This demo points its own two bridges at the daemon: node management (the node's bridge
# br-int over OVSDB) stays off here.
export SHARDFLOW_NODE_OVSDB=none
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
echo "== 1. the daemon (docs/pipeline.md's example config + a policy file), logs in $DIR/shardflow.log"
"$SF" run --config "$DIR/shardflow.toml" > "$DIR/shardflow.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$HTTP/healthz', timeout=1)" 2>/dev/null && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$DIR/shardflow.log"; exit 1; }
    sleep 0.1
done
SHARDS=$(http GET "$HTTP/v1/shards" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
PORTS=$(seq 6653 $((6653 + SHARDS - 1)) | tr '\n' ' ')
echo "  $SHARDS shards, OpenFlow ports $PORTS"

echo
echo "== 2. both bridges connect to every shard; the daemon installs the pipeline"
for br in br0 br1; do scripts/ovs-sandbox.sh controllers "$DIR" $br $PORTS; done
for _ in $(seq 1 100); do
    n=$(http GET "$HTTP/v1/switches" | python3 -c "import json,sys; s=json.load(sys.stdin); print(sum(1 for x in s if x['connections']==$SHARDS and x['pipeline_installed_ms'] is not None))")
    [ "$n" = 2 ] && break
    sleep 0.1
done
http GET "$HTTP/v1/switches"
echo "  br0's flows per table (docs/pipeline.md):"
ovs-ofctl -O OpenFlow13 dump-flows br0 --no-stats | sed -E 's/.*table=([0-9]+).*/\1/; t; s/.*/0/' | sort -n | uniq -c \
    | awk '{printf "   table %3s: %s flows\n", $2, $1}'

echo
echo "== 3. 10 TCP connections from pod 4 (10.244.1.4) to pod 2 (10.244.1.2:80)"
GW=02:00:0a:f4:01:01; POD2=0a:58:0a:f4:01:02; POD4=0a:58:0a:f4:01:04
for i in $(seq 1 10); do
    ovs-appctl netdev-dummy/receive br0-p4 "in_port(4),eth(src=$POD4,dst=$GW),eth_type(0x0800),ipv4(src=10.244.1.4,dst=10.244.1.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=$((40000 + i)),dst=80),tcp_flags(syn)"
done
sleep 0.5
echo "  SYNs delivered to pod 2 (port 2): $(pcap_count "$DIR/br0-p2-tx.pcap")"
for i in $(seq 1 10); do
    ovs-appctl netdev-dummy/receive br0-p2 "in_port(2),eth(src=$POD2,dst=$GW),eth_type(0x0800),ipv4(src=10.244.1.2,dst=10.244.1.4,proto=6,tos=0,ttl=64,frag=no),tcp(src=80,dst=$((40000 + i))),tcp_flags(syn|ack)"
done
sleep 0.5
echo "  SYN-ACKs delivered back to pod 4 (port 4), no controller involved: $(pcap_count "$DIR/br0-p4-tx.pcap")"
echo "  the flows the shards installed for the first connection (table 3):"
ovs-ofctl -O OpenFlow13 dump-flows br0 "table=3,tcp,tp_src=40001" --no-stats | sed 's/^/   /'
ovs-ofctl -O OpenFlow13 dump-flows br0 "table=3,tcp,tp_dst=40001" --no-stats | sed 's/^/   /'
echo "  conntrack, zone 1: $(ovs-appctl dpctl/dump-conntrack | grep -c 'zone=1') entries, e.g."
ovs-appctl dpctl/dump-conntrack | grep 'sport=40001' | sed 's/^/   /'
http GET "$HTTP/v1/shards" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    conns = s["connections"]
    print("   shard %d: %d packet-ins, decided %d connections, decision p50 %.0f us" % (
        s["shard"], s["packet_ins"], len(conns), s["decision_p50_us"]))'

echo
echo "== 3b. the policy file at work: a denied connection (port 22) and a service (10.96.0.10:80)"
before=$(pcap_count "$DIR/br0-p2-tx.pcap")
ovs-appctl netdev-dummy/receive br0-p4 "in_port(4),eth(src=$POD4,dst=$GW),eth_type(0x0800),ipv4(src=10.244.1.4,dst=10.244.1.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=45022,dst=22),tcp_flags(syn)"
sleep 0.3
echo "   SYN to port 22 delivered: $(( $(pcap_count "$DIR/br0-p2-tx.pcap") - before )) (denied); the drop flow:"
ovs-ofctl -O OpenFlow13 dump-flows br0 "table=3,tcp,tp_dst=22" --no-stats | sed 's/^/   /'
ovs-appctl netdev-dummy/receive br0-p4 "in_port(4),eth(src=$POD4,dst=$GW),eth_type(0x0800),ipv4(src=10.244.1.4,dst=10.96.0.10,proto=6,tos=0,ttl=64,frag=no),tcp(src=45080,dst=80),tcp_flags(syn)"
sleep 0.3
echo "   SYN to the service VIP delivered to pod 2: $(( $(pcap_count "$DIR/br0-p2-tx.pcap") - before )); DNAT in conntrack zone 2:"
ovs-appctl dpctl/dump-conntrack | grep 'sport=45080' | sed 's/^/   /'
ovs-ofctl -O OpenFlow13 dump-flows br0 "table=0,tcp,tp_src=45080" --no-stats | sed 's/^/   /'

echo
echo "== 4. a TCP connection from the uplink (port 1) to pod 2 learns its return flow (table 15 -> 6)"
ovs-appctl netdev-dummy/receive br0-p1 "in_port(1),eth(src=02:00:00:00:09:09,dst=$POD2),eth_type(0x0800),ipv4(src=192.168.7.7,dst=10.244.1.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=5555,dst=8080),tcp_flags(syn)"
sleep 0.3
ovs-ofctl -O OpenFlow13 dump-flows br0 table=6 --no-stats | grep -v 'priority=0' | sed 's/^/   /'
ovs-appctl netdev-dummy/receive br0-p2 "in_port(2),eth(src=$POD2,dst=$GW),eth_type(0x0800),ipv4(src=10.244.1.2,dst=192.168.7.7,proto=6,tos=0,ttl=64,frag=no),tcp(src=8080,dst=5555),tcp_flags(syn|ack)"
sleep 0.3
echo "   the reply left on the uplink: $(pcap_count "$DIR/br0-p1-tx.pcap") packet(s)"

echo
echo "== 5. REST: add a flow to br0, read it back, delete it by cookie"
http POST "$HTTP/v1/switches/0000000000000001/flows?command=add" 'table=3,priority=100,cookie=0xf00,tcp,nw_src=10.244.1.4,tp_dst=443,actions=ct(commit,zone=1),output:2'
ovs-ofctl -O OpenFlow13 dump-flows br0 table=3,cookie=0xf00/-1 --no-stats | sed 's/^/   ovs: /'
http DELETE "$HTTP/v1/switches/0000000000000001/flows?cookie=0xf00&cookie_mask=0xff000000ffff"
echo "   flows with cookie 0xf00 left: $(ovs-ofctl -O OpenFlow13 dump-flows br0 cookie=0xf00/-1 --no-stats | wc -l)"
echo "  a refused flow (no group 99) answers with the switch's error:"
http POST "$HTTP/v1/switches/0000000000000001/flows" 'table=3,priority=1,ip,actions=group:99' | sed 's/^/   /'
echo "  a flow OVS refuses when decoding is refused at our edge, with OVS's error name:"
http POST "$HTTP/v1/switches/0000000000000001/flows" 'table=8,priority=1,actions=goto_table:2' | sed 's/^/   /'
echo "  the daemon's own flows are guarded: a DELETE that could reach them needs force=true:"
http DELETE "$HTTP/v1/switches/0000000000000001/flows?table=0" | sed 's/^/   /'

echo
echo "== 5b. the pipeline heals: a pipeline flow deleted behind the daemon's back comes back"
ovs-ofctl -O OpenFlow13 del-flows --strict br0 'table=0,priority=0'
echo "   deleted by hand with ovs-ofctl: table=0,priority=0 (the table-0 miss); the audit runs every 500 ms"
for _ in $(seq 1 50); do
    [ "$(ovs-ofctl -O OpenFlow13 dump-flows br0 'table=0' --no-stats | grep -c 'priority=0')" -ge 1 ] && break
    sleep 0.1
done
ovs-ofctl -O OpenFlow13 dump-flows br0 table=0 --no-stats | grep 'priority=0' | sed 's/^/   back on the switch: /'
for _ in $(seq 1 30); do [ "$(http GET "$HTTP/readyz")" = ready ] && break; sleep 0.1; done
echo "   /readyz: $(http GET "$HTTP/readyz")"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://$HTTP/metrics').read().decode())" \
    | grep -E '^shardflow_pipeline_repairs_total' | sed 's/^/   /'
echo "  /metrics (excerpt):"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://$HTTP/metrics').read().decode())" \
    | grep -E '^shardflow_(switch_connections|packet_in_total\{kind="tcp"|decisions_total|packet_in_decision_seconds_count)' | sed 's/^/   /'

echo
echo "== 6. the codec: shardflow's FLOW_MODs against OVS's own encoder (ovs-ofctl -mmmmm parse-flow)"
FLOWS=(
  'table=0,priority=200,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,zone=2,nat(dst=10.0.0.5:8080)),resubmit(,3)'
  'table=15,priority=10,udp,actions=learn(table=6,idle_timeout=60,eth_type=0x800,nw_proto=17,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_UDP_SRC[]=NXM_OF_UDP_DST[],output:NXM_OF_IN_PORT[]),output:2'
  'table=3,priority=100,ipv6,ipv6_src=fd00::/64,ct_state=+trk+est,actions=write_metadata:0x5/0xff,goto_table:6'
)
for f in "${FLOWS[@]}"; do
    ours=$("$SF" flow encode --xid 1 "$f")
    theirs=$(ovs-ofctl -O OpenFlow13 -mmmmm parse-flow "$f" | grep -E '^[0-9a-f]{8}  ' \
        | sed -E 's/^[0-9a-f]{8}  //; s/\|.*$//; s/[- ]//g' | tr -d '\n')
    [ "$ours" = "$theirs" ] && echo "   identical ($(( ${#ours} / 2 )) bytes): ${f:0:80}..." || echo "   DIFFERENT: $f"
done

echo
echo "== 7. SIGTERM: graceful stop; the bridge keeps its flows (fail_mode=secure)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "   daemon exited 0" || echo "   daemon exited $?"
DAEMON_PID=
echo "   br0 still has $(ovs-ofctl -O OpenFlow13 dump-flows br0 --no-stats | wc -l) flows"
grep -E "pipeline in place" "$DIR/shardflow.log" | sed "s/^/   log: /" | head -2
