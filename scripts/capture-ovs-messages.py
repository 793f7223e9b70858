#!/usr/bin/env python3
"""Capture real OpenFlow 1.3 messages from a real Open vSwitch, one message per .hex file.

Starts a private OVS sandbox (scripts/ovs-sandbox.sh), talks to the bridge's management socket
(br0.mgmt) as a controller would, provokes every kind of message the switch sends (replies,
errors, packet-ins, flow-removed, port-status, ...) and writes each received message as
lower-case hex into OUT_DIR/<name>.hex. These are the golden inputs of the decoder tests
(tests/ovs_messages.rs) and seeds of the fuzz targets.

    scripts/capture-ovs-messages.py OUT_DIR
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
V = 4  # OpenFlow 1.3
NX = 0x00002320
ONF = 0x4F4E4600


def hdr(t, body=b"", xid=0):
    return struct.pack("!BBHI", V, t, 8 + len(body), xid) + body


def nx_msg(subtype, body=b"", xid=0):
    return hdr(4, struct.pack("!II", NX, subtype) + body, xid)


def mp_request(mtype, body=b"", xid=0):
    return hdr(18, struct.pack("!HH4x", mtype, 0) + body, xid)


class Switch:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(5)
        self.buf = b""
        self.xid = 100

    def send(self, msg):
        self.s.sendall(msg)

    def recv(self, timeout=5.0):
        """One whole message, or None on timeout."""
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 8:
                length = struct.unpack("!H", self.buf[2:4])[0]
                if len(self.buf) >= length:
                    msg, self.buf = self.buf[:length], self.buf[length:]
                    return msg
            left = deadline - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise RuntimeError("switch closed the connection")
            self.buf += data

    def until(self, pred, timeout=5.0):
        """Messages until one satisfies pred (an echo request is answered on the way)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.recv(deadline - time.time())
            if m is None:
                break
            if m[1] == 2:  # echo request: keep the connection alive
                self.send(hdr(3, m[8:], struct.unpack("!I", m[4:8])[0]))
                continue
            if pred(m):
                return m
        raise RuntimeError("expected message did not come")

    def request(self, msg_builder, want_type=None):
        self.xid += 1
        xid = self.xid
        self.send(msg_builder(xid))
        return self.until(lambda m: struct.unpack("!I", m[4:8])[0] == xid and (want_type is None or m[1] == want_type))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    sandbox = tempfile.mkdtemp(prefix="shardflow-capture-")
    sh = os.path.join(HERE, "ovs-sandbox.sh")
    subprocess.run([sh, "up", sandbox, "br0"], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OVS_RUNDIR=sandbox, OVS_DBDIR=sandbox, OVS_LOGDIR=sandbox,
               OVS_SYSCONFDIR=sandbox, OVS_PKGDATADIR="/usr/share/openvswitch")

    def ofctl(*args):
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13"] + list(args), check=True, env=env,
                       stdout=subprocess.DEVNULL)

    def appctl(*args):
        subprocess.run(["ovs-appctl"] + list(args), check=True, env=env, stdout=subprocess.DEVNULL)

    def vsctl(*args):
        subprocess.run(["ovs-vsctl", "--db=unix:%s/db.sock" % sandbox] + list(args), check=True, env=env,
                       stdout=subprocess.DEVNULL)

    saved = []

    def save(name, msg):
        with open(os.path.join(out, name + ".hex"), "w") as f:
            f.write(msg.hex() + "\n")
        saved.append(name)

    try:
        sw = Switch(os.path.join(sandbox, "br0.mgmt"))
        sw.send(hdr(0, struct.pack("!HHI", 1, 8, 1 << 4), 1))  # HELLO, bitmap: 1.3 only
        save("hello", sw.until(lambda m: m[1] == 0))

        save("features_reply", sw.request(lambda x: hdr(5, xid=x), 6))
        save("get_config_reply", sw.request(lambda x: hdr(7, xid=x), 8))
        save("echo_reply", sw.request(lambda x: hdr(2, b"shardflow", x), 3))
        save("barrier_reply", sw.request(lambda x: hdr(20, xid=x), 21))
        save("role_reply", sw.request(lambda x: hdr(24, struct.pack("!I4xQ", 0, 0), x), 25))
        save("get_async_reply", sw.request(lambda x: hdr(26, xid=x), 27))
        save("desc_reply", sw.request(lambda x: mp_request(0, xid=x), 19))
        save("port_desc_reply", sw.request(lambda x: mp_request(13, xid=x), 19))
        save("port_stats_reply", sw.request(lambda x: mp_request(4, struct.pack("!I4x", 0xFFFFFFFF), x), 19))
        # table stats: 254 tables, may come in several parts; keep the first.
        save("table_stats_reply", sw.request(lambda x: mp_request(3, xid=x), 19))

        ofctl("add-group", "br0", "group_id=1,type=select,bucket=weight:10,output:1,bucket=weight:20,output:2")
        ofctl("add-group", "br0", "group_id=2,type=all,bucket=output:1,bucket=set_field:10.0.0.9->ip_dst,output:2")
        save("group_desc_reply", sw.request(lambda x: mp_request(7, xid=x), 19))
        save("group_stats_reply", sw.request(lambda x: mp_request(6, struct.pack("!I4x", 0xFFFFFFFC), x), 19))
        ofctl("add-meter", "br0", "meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100")
        save("meter_config_reply", sw.request(lambda x: mp_request(10, struct.pack("!I4x", 0xFFFFFFFF), x), 19))
        save("meter_stats_reply", sw.request(lambda x: mp_request(9, struct.pack("!I4x", 0xFFFFFFFF), x), 19))
        save("meter_features_reply", sw.request(lambda x: mp_request(11, xid=x), 19))

        flows = [
            "table=0,priority=100,tcp,nw_src=10.0.0.1,tp_dst=80,actions=ct(commit,zone=1,nat(dst=10.0.0.5:8080)),output:2",
            "table=0,priority=90,ip,ct_state=-trk,actions=ct(table=1,zone=2)",
            "table=1,priority=10,cookie=0xab,in_port=1,dl_src=00:11:22:33:44:55,actions=group:1",
            "table=15,priority=5,udp,actions=learn(table=6,idle_timeout=30,eth_type=0x800,nw_proto=17,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_UDP_SRC[]=NXM_OF_UDP_DST[],output:NXM_OF_IN_PORT[]),resubmit(,6)",
            "table=3,priority=1,arp,arp_tpa=10.0.0.0/24,actions=meter:1,write_metadata:0x1/0xff,goto_table:4",
        ]
        for f in flows:
            ofctl("add-flow", "br0", f)
        # flow stats request: table all, any port/group, cookie 0/0, empty match.
        flow_req = struct.pack("!B3xII4xQQ", 0xFF, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0) + struct.pack("!HH4x", 1, 4)
        save("flow_stats_reply", sw.request(lambda x: mp_request(1, flow_req, x), 19))
        save("aggregate_stats_reply", sw.request(lambda x: mp_request(2, flow_req, x), 19))

        # Errors: an unknown message type, a FLOW_MOD that is too short, a bad multipart.
        save("error_bad_type", sw.request(lambda x: hdr(200, b"\x00" * 8, x), 1))
        save("error_bad_len", sw.request(lambda x: hdr(14, b"\x00" * 4, x), 1))
        save("error_bad_multipart", sw.request(lambda x: mp_request(0x7777, xid=x), 1))
        save("error_bad_experimenter", sw.request(lambda x: hdr(4, struct.pack("!II", 0x12345678, 1), x), 1))

        # Bundles (ONF extension in OF1.3): open, then close.
        save("bundle_open_reply", sw.request(
            lambda x: hdr(4, struct.pack("!IIIHH", ONF, 2300, 7, 0, 3), x), 4))
        save("bundle_close_reply", sw.request(
            lambda x: hdr(4, struct.pack("!IIIHH", ONF, 2300, 7, 2, 3), x), 4))

        # Packet-ins: the management connection gets none until miss_send_len is set.
        sw.send(hdr(9, struct.pack("!HH", 0, 0xFFFF), 2))  # SET_CONFIG
        ofctl("add-flow", "br0", "table=0,priority=200,in_port=1,tcp,tp_dst=8080,actions=controller")
        pkt = ("in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x0800),"
               "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=1234,dst=8080),tcp_flags(syn)")
        appctl("netdev-dummy/receive", "br0-p1", pkt)
        save("packet_in", sw.until(lambda m: m[1] == 10))

        # Packet-in2 with a continuation (pause), after asking for the NXT_PACKET_IN2 format.
        sw.send(nx_msg(16, struct.pack("!I", 2), 3))  # NXT_SET_PACKET_IN_FORMAT = 16
        ofctl("add-flow", "br0",
              "table=0,priority=200,in_port=1,udp,tp_dst=53,actions=controller(userdata=01.02.03,pause),output:2")
        pkt2 = ("in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x0800),"
                "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=5353,dst=53)")
        appctl("netdev-dummy/receive", "br0-p1", pkt2)
        save("packet_in2", sw.until(lambda m: m[1] == 4 and struct.unpack("!I", m[12:16])[0] == 30))

        # Flow removed: a flow that asks for it, deleted.
        ofctl("add-flow", "br0", "table=2,priority=7,send_flow_rem,cookie=0x77,udp,tp_dst=99,actions=drop")
        ofctl("del-flows", "br0", "table=2,udp,tp_dst=99")
        save("flow_removed", sw.until(lambda m: m[1] == 11))

        # Port status: a port appears.
        vsctl("add-port", "br0", "p9", "--", "set", "interface", "p9", "type=dummy", "ofport_request=9")
        save("port_status", sw.until(lambda m: m[1] == 12))
    finally:
        subprocess.run([sh, "down", sandbox], stdout=subprocess.DEVNULL)
        shutil.rmtree(sandbox, ignore_errors=True)
    print("captured %d messages into %s: %s" % (len(saved), out, " ".join(saved)))


if __name__ == "__main__":
    main()
