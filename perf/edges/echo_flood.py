#!/usr/bin/env python3
"""A switch that handshakes, then floods echo requests and never reads: the daemon's memory.

    perf/edges/echo_flood.py BINARY [MIB]

Starts BINARY (`run --shards 2`) on free ports, connects a fake OpenFlow 1.3 switch to shard 0,
answers the handshake and the dispatch install, then writes MIB (default 300) MiB of 65,535-byte
ECHO_REQUESTs without reading anything. Prints the daemon's VmRSS before and at its peak, how
much it took before refusing more (or all of it), and whether it closed the connection.
Everything on 127.0.0.1; the daemon is killed at the end.
"""
import os, socket, struct, subprocess, sys, threading, time

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def read_msg(s):
    h = b""
    while len(h) < 8:
        c = s.recv(8 - len(h))
        if not c:
            return None
        h += c
    n = struct.unpack("!H", h[2:4])[0]
    body = b""
    while len(body) < n - 8:
        c = s.recv(n - 8 - len(body))
        if not c:
            return None
        body += c
    return h + body

def answer(s, m, dpid=0xed01):
    ty, xid = m[1], m[4:8]
    def reply(t, body):
        return bytes([4, t]) + struct.pack("!H", 8 + len(body)) + xid + body
    if ty == 2:
        s.sendall(reply(3, m[8:]))
    elif ty == 5:
        s.sendall(reply(6, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0x4f, 0)))
    elif ty == 18:
        s.sendall(reply(19, m[8:10] + b"\0" * 6))
    elif ty == 20:
        s.sendall(reply(21, b""))
    elif ty == 4 and len(m) >= 24 and m[8:16] == bytes.fromhex("4f4e4600000008fc"):
        r = bytearray(m); t = struct.unpack("!H", m[20:22])[0] + 1; r[20:22] = struct.pack("!H", t)
        s.sendall(bytes(r))

def main():
    binary = sys.argv[1]
    total = (int(sys.argv[2]) if len(sys.argv) > 2 else 300) << 20
    base_port, http = 22000 + os.getpid() % 5000, free_port()
    p = subprocess.Popen([binary, "run", "--shards", "2", "--base-port", str(base_port),
                          "--http", f"127.0.0.1:{http}", "--log-level", "warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = None
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", base_port)); break
            except OSError:
                time.sleep(0.1)
        s.sendall(bytes.fromhex("0400001000000001000100080000000010"[:32]))
        s.settimeout(0.5)
        end = time.time() + 5
        while time.time() < end:
            try:
                m = read_msg(s)
            except socket.timeout:
                continue
            if m is None:
                break
            answer(s, m)
        s.settimeout(None)
        time.sleep(0.5)
        base = rss(p.pid)
        peak = [base]
        done = [False]
        def watch():
            while not done[0]:
                peak[0] = max(peak[0], rss(p.pid)); time.sleep(0.05)
        w = threading.Thread(target=watch); w.start()
        msg = bytes([4, 2, 0xff, 0xff, 0, 0, 0, 9]) + b"\xa5" * (65535 - 8)
        sent, t0, closed = 0, time.time(), False
        s.settimeout(60)
        try:
            while sent < total:
                s.sendall(msg); sent += len(msg)
        except OSError as e:
            closed = True
        took = time.time() - t0
        time.sleep(1)
        done[0] = True; w.join()
        print(f"{os.path.basename(binary)}: flooded {sent >> 20} MiB in {took:.1f} s, "
              f"{'connection closed by the daemon' if closed else 'never disconnected'}; "
              f"RSS {base} KiB -> peak {peak[0]} KiB (+{(peak[0] - base) >> 10} MiB), now {rss(p.pid)} KiB")
    finally:
        p.kill(); p.wait()

if __name__ == "__main__":
    main()
