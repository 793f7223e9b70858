#!/usr/bin/env python3
"""Resident memory of `shardflow run` holding N idle OpenFlow connections, and after they close.

    perf/edges/idle_conns_rss.py BINARY [N]

Starts BINARY (`run --shards 2`, request_timeout_secs = 60 so the HELLO timeout does not close the
idle connections, max_switch_connections = N) on free ports, opens N TCP connections that never
send anything, waits until the daemon holds them, closes them, and prints VmRSS (KiB) at each
step. Everything on 127.0.0.1; the daemon is killed at the end.
"""
import os, socket, subprocess, sys, tempfile, time, resource

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(cond, secs):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False

def main():
    binary, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base_port, http = 21000 + os.getpid() % 5000, free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"[openflow]\nrequest_timeout_secs = 60\n")
    cfg.close()
    extra = ["--config", cfg.name]
    # An older binary may not know max_switch_connections: only set it when the binary does.
    if b"max_switch_connections" in open(binary, "rb").read():
        with open(cfg.name, "a") as f:
            f.write(f"max_switch_connections = {n}\n")
    p = subprocess.Popen([binary, "run", "--shards", "2", "--base-port", str(base_port),
                          "--http", f"127.0.0.1:{http}", "--log-level", "warn", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                for port in (http, base_port, base_port + 1):
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        assert wait(up, 10), "daemon not up"
        time.sleep(0.5)
        f0, base = fds(p.pid), rss(p.pid)
        conns = [socket.create_connection(("127.0.0.1", base_port + i % 2)) for i in range(n)]
        assert wait(lambda: fds(p.pid) >= f0 + n, 20), f"not all accepted: {fds(p.pid)} fds"
        time.sleep(1)
        loaded = rss(p.pid)
        for c in conns:
            c.close()
        wait(lambda: fds(p.pid) <= f0 + 2, 20)
        time.sleep(1)
        after = rss(p.pid)
        print(f"{os.path.basename(binary)}: {n} idle connections: RSS {base} KiB -> {loaded} KiB "
              f"(+{loaded - base} KiB, {(loaded - base) * 1024 // n} B each) -> {after} KiB after close "
              f"(+{after - base} KiB kept), fds {fds(p.pid)}")
    finally:
        p.kill(); p.wait(); os.unlink(cfg.name)

if __name__ == "__main__":
    main()
