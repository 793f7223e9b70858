"""The old design's Packet-In path, re-created on os-ken (the maintained Ryu), as a baseline.

Per first packet of a connection it does the same job shardflow does: parse the frame
(ethernet, ipv4, tcp/udp), look the connection up in an in-memory policy (allow all; the two
pods of docs/pipeline.md give the destination's port and MAC), then send a forward and a
reverse FLOW_MOD into table 3 (match eth_type, ip_proto, ipv4_src/dst, tcp/udp ports;
actions ct(commit, zone=1), set eth_dst, output; idle_timeout 300; one cookie per
connection) and a PACKET_OUT of the packet (buffer_id NO_BUFFER).

The PACKET_OUT applies the forward flow's actions to the packet (ct(commit,zone=1), set
eth_dst, output:PORT), so the first packet is committed to conntrack like the rest. With
OSKEN_PACKET_OUT=table its action is `output:TABLE` instead: the packet re-enters the
pipeline at table 0. On a real OVS that races with the datapath's flow cache: the packet's
recirculation after ct() can still hit the cached "miss -> controller" megaflow of the first
pass (seen here: the packet comes back as a second packet-in, the SYN is lost and TCP
retransmits it after 1 s). On a bare bridge whose only flow is the table miss it loops for
good; a loop guard drops a connection's packet-in that comes back within 1 s.

On switch features it installs table-miss -> controller in table 0 (as the old controller
did; with the default pipeline loaded on the bridge, this replaces its table-0 miss).
Environment knobs: OSKEN_CT=0 leaves out the ct(commit) action, OSKEN_QUIET=1 silences the
per-switch log lines.
"""

import os
import time
import zlib

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import ethernet, ipv4, packet, tcp, udp
from os_ken.ofproto import ether, inet, ofproto_v1_3

POLICY_TABLE = 3
POD_ZONE = 1
GATEWAY_PORT = 3
IDLE_TIMEOUT = 300
PRIORITY = 100
# generation 1 | category 0x03 (connection) | 40-bit object id, as shardflow's cookies.
COOKIE_BASE = (1 << 48) | (0x03 << 40)

# The in-memory "policy": allow all; pod IP -> (OpenFlow port, MAC).
PODS = {
    "10.244.1.2": (2, "0a:58:0a:f4:01:02"),
    "10.244.1.4": (4, "0a:58:0a:f4:01:04"),
}


def allowed(src_ip, dst_ip, proto, sport, dport):
    """The policy decision (allow all, as Kubernetes without NetworkPolicies)."""
    return True


class ReactiveApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_ct = os.environ.get("OSKEN_CT", "1") != "0"
        self.out_to_table = os.environ.get("OSKEN_PACKET_OUT", "port") == "table"
        self.quiet = os.environ.get("OSKEN_QUIET", "0") == "1"
        self.packet_ins = 0
        self.decided = 0
        self.recent = {}  # key -> time of the decision (output:TABLE loop guard)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        actions = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, table_id=0, priority=0,
                                      match=parser.OFPMatch(), instructions=inst))
        if not self.quiet:
            self.logger.info("switch %016x connected: table-miss -> controller", dp.id)

    def _actions(self, parser, ofp, port, mac, in_port):
        acts = []
        if self.use_ct:
            # ct(commit,zone=1): flags 1 = commit, immediate zone, no recirculation (255).
            acts.append(parser.NXActionCT(flags=1, zone_src="", zone_ofs_nbits=POD_ZONE,
                                          recirc_table=255, alg=0, actions=[]))
        if mac is not None:
            acts.append(parser.OFPActionSetField(eth_dst=mac))
        acts.append(parser.OFPActionOutput(ofp.OFPP_IN_PORT if port == in_port else port))
        return acts

    def _flow(self, dp, cookie, fields, actions):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        return parser.OFPFlowMod(datapath=dp, cookie=cookie, table_id=POLICY_TABLE,
                                 command=ofp.OFPFC_ADD, idle_timeout=IDLE_TIMEOUT,
                                 priority=PRIORITY, buffer_id=ofp.OFP_NO_BUFFER,
                                 match=parser.OFPMatch(**fields), instructions=inst)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.packet_ins += 1
        in_port = msg.match["in_port"]

        pkt = packet.Packet(msg.data)
        eth = pkt.get_protocol(ethernet.ethernet)
        ip = pkt.get_protocol(ipv4.ipv4)
        if eth is None or ip is None:
            return
        l4 = pkt.get_protocol(tcp.tcp)
        if l4 is None:
            l4 = pkt.get_protocol(udp.udp)
        if l4 is None:
            return
        proto = ip.proto
        src, dst, sport, dport = ip.src, ip.dst, l4.src_port, l4.dst_port
        if not allowed(src, dst, proto, sport, dport):
            return

        dst_port, dst_mac = PODS.get(dst, (GATEWAY_PORT, None))
        src_port, src_mac = PODS.get(src, (in_port, eth.src))
        # One cookie for both directions: a direction-free hash of the 5-tuple.
        a, b = sorted([(src, sport), (dst, dport)])
        key = ("%s:%d-%s:%d/%d" % (a[0], a[1], b[0], b[1], proto)).encode()
        cookie = COOKIE_BASE | (zlib.crc32(key) & 0xFFFFFFFFFF)

        l4_src, l4_dst = ("tcp_src", "tcp_dst") if proto == inet.IPPROTO_TCP else ("udp_src", "udp_dst")
        fwd = {"eth_type": ether.ETH_TYPE_IP, "ip_proto": proto, "ipv4_src": src,
               "ipv4_dst": dst, l4_src: sport, l4_dst: dport}
        rev = {"eth_type": ether.ETH_TYPE_IP, "ip_proto": proto, "ipv4_src": dst,
               "ipv4_dst": src, l4_src: dport, l4_dst: sport}
        fwd_actions = self._actions(parser, ofp, dst_port, dst_mac, in_port)
        dp.send_msg(self._flow(dp, cookie, fwd, fwd_actions))
        dp.send_msg(self._flow(dp, cookie, rev, self._actions(parser, ofp, src_port, src_mac, dst_port)))

        if self.out_to_table:
            # Loop guard: the same connection back within 1 s means the packet-out met no
            # flow (no pipeline in front of table 3): do not send it round again.
            now = time.monotonic()
            if now - self.recent.get(key, -10.0) < 1.0:
                self.logger.warning("packet-in loop for %s (table %s): packet-out met no flow", key.decode(), msg.table_id)
                return
            if len(self.recent) > 100000:
                self.recent.clear()
            self.recent[key] = now
            out_actions = [parser.OFPActionOutput(ofp.OFPP_TABLE)]
        else:
            out_actions = fwd_actions
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER,
                                        in_port=in_port, actions=out_actions, data=msg.data))
        self.decided += 1
