#!/usr/bin/env bash
# The main job, as far as it is built: a private, real Open vSwitch driven by shardflow's codec.
#
#  1. starts a sandboxed OVS 3.1 (userspace datapath, dummy ports, all in a temporary folder);
#  2. encodes a sample pipeline (service DNAT with conntrack, per-connection flows in table 3,
#     uplink traffic 4 -> 15 learning its return flow into table 6, packet-in fan-out to two
#     controller ids) with shardflow and checks each FLOW_MOD byte for byte against OVS's encoder;
#  3. installs it on the bridge in one atomic ONF bundle through shardflow's OpenFlow client;
#  4. injects a UDP packet on the uplink port and shows the return flow OVS learned from it and
#     the packet leaving on port 2;
#  5. prints the bridge's flows as OVS and as shardflow read them.
# The daemon itself (`shardflow run`) is not built yet: it comes with the runtime issue.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-ovs.sh
echo "== building shardflow"
cargo build --quiet --bin shardflow
SF=target/debug/shardflow

DIR=$(mktemp -d /tmp/shardflow-demo.XXXXXX)
cleanup() { scripts/ovs-sandbox.sh down "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
scripts/ovs-sandbox.sh up "$DIR" br0
eval "$(scripts/ovs-sandbox.sh env "$DIR")"
SWITCH="unix:$DIR/br0.mgmt"

FLOWS=(
  'table=0,priority=200,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,zone=2,nat(dst=10.0.0.5:8080)),resubmit(,3)'
  'table=0,priority=100,in_port=1,actions=resubmit(,4)'
  'table=0,priority=0,ip,actions=multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG0[0..15]),resubmit(,1)'
  'table=1,priority=10,reg0=0,actions=controller(id=1)'
  'table=1,priority=10,reg0=1,actions=controller(id=2)'
  'table=3,priority=100,cookie=0x1000000000000001,idle_timeout=300,ct_state=+trk+new,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.5,tp_dst=8080,actions=ct(commit,zone=1),output:2'
  'table=4,priority=10,udp,actions=resubmit(,15)'
  'table=15,priority=10,udp,actions=learn(table=6,idle_timeout=60,priority=100,eth_type=0x800,nw_proto=17,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],NXM_OF_UDP_SRC[]=NXM_OF_UDP_DST[],NXM_OF_UDP_DST[]=NXM_OF_UDP_SRC[],load:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],output:NXM_OF_IN_PORT[]),output:2'
)

echo
echo "== 1. shardflow's FLOW_MODs against OVS's own encoder (ovs-ofctl -mmmmm parse-flow)"
ovs_hex() { # the hex dump lines of parse-flow, joined
    ovs-ofctl -O OpenFlow13 -mmmmm parse-flow "$1" | grep -E '^[0-9a-f]{8}  ' \
        | sed -E 's/^[0-9a-f]{8}  //; s/\|.*$//; s/[- ]//g' | tr -d '\n'
}
same=0
for f in "${FLOWS[@]}"; do
    ours=$($SF flow encode --xid 1 "$f")
    theirs=$(ovs_hex "$f")
    if [ "$ours" = "$theirs" ]; then
        same=$((same + 1)); echo "  identical ($(( ${#ours} / 2 )) bytes): ${f:0:90}..."
    else
        echo "  DIFFERENT: $f"; echo "    shardflow: $ours"; echo "    ovs:       $theirs"
    fi
done
echo "  $same of ${#FLOWS[@]} FLOW_MODs are byte-identical to OVS's"

echo
echo "== 2. installing them in one atomic bundle (shardflow flow add --bundle)"
$SF flow add --bundle --switch "$SWITCH" "${FLOWS[@]}"
echo "  committed"

echo
echo "== 3. a UDP packet from the uplink (port 1): table 0 -> 4 -> 15 learns the return flow into table 6"
ovs-appctl netdev-dummy/receive br0-p1 \
  'in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=5353,dst=53)'
sleep 0.5
echo "  learned in table 6:"
ovs-ofctl -O OpenFlow13 dump-flows br0 table=6 --no-stats | sed 's/^/   /'
echo "  bytes written to port 2's pcap: $(stat -c %s "$DIR/br0-p2-tx.pcap") (24 = empty pcap header)"

echo
echo "== 4. the bridge's flows: ovs-ofctl dump-flows --no-stats vs shardflow flow dump"
ovs-ofctl -O OpenFlow13 dump-flows br0 --no-stats | sort > "$DIR/ovs.txt"
$SF flow dump --switch "$SWITCH" | sort > "$DIR/sf.txt"
cat "$DIR/sf.txt"
if diff -u "$DIR/ovs.txt" "$DIR/sf.txt" >/dev/null; then
    echo "  -> identical to ovs-ofctl's $(wc -l < "$DIR/ovs.txt") lines"
else
    echo "  -> differs from ovs-ofctl:"; diff -u "$DIR/ovs.txt" "$DIR/sf.txt" || true
fi

echo
echo "== 5. the daemon"
$SF run || echo "  (exit $?: not built yet; see README)"
