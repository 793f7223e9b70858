#!/usr/bin/env python3
"""Writes a big policy file (docs/policy.md) for load and decision measurements.

    scripts/gen-policy.py --rules 1000000 --seed 1 > /tmp/policy-1m.toml

The rules are a seeded mix of what a node's policy holds: pod-to-pod allows (/32 to /32 with a
TCP port), pod-to-subnet rules with port ranges, namespace-wide (/24, /16) denies, ICMP, IPv6
pairs, and a few `any` sides. The same seed gives the same file.
"""
import argparse
import random
import sys


def v4(rng, prefix):
    a = (10 << 24) | rng.getrandbits(24)
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
    a &= mask
    s = ".".join(str((a >> s) & 255) for s in (24, 16, 8, 0))
    return s if prefix == 32 else f"{s}/{prefix}"


def v6(rng, prefix):
    a = (0xFD00 << 112) | rng.getrandbits(112)
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    a &= mask
    groups = [(a >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    s = ":".join(f"{g:x}" for g in groups)
    return s if prefix == 128 else f"{s}/{prefix}"


def rule(rng, out):
    kind = rng.random()
    out.append("[[rule]]\n")
    out.append(f'action = "{"allow" if rng.random() < 0.7 else "deny"}"\n')
    if kind < 0.55:  # pod to pod, one port
        out.append(f'src = "{v4(rng, 32)}"\ndst = "{v4(rng, 32)}"\nprotocol = "tcp"\nports = {rng.choice([80, 443, 8080, 53, 9090, 5432])}\n')
    elif kind < 0.75:  # pod to subnet, a range
        lo = rng.randrange(1, 60000)
        out.append(f'src = "{v4(rng, 32)}"\ndst = "{v4(rng, 24)}"\nprotocol = "{rng.choice(["tcp", "udp"])}"\nports = "{lo}-{lo + rng.randrange(0, 2000)}"\n')
    elif kind < 0.85:  # namespace to namespace
        out.append(f'src = "{v4(rng, rng.choice([16, 20, 24]))}"\ndst = "{v4(rng, rng.choice([16, 24]))}"\n')
    elif kind < 0.90:  # ICMP
        out.append(f'src = "{v4(rng, 24)}"\nprotocol = "icmp"\n')
    elif kind < 0.97:  # IPv6 pod to pod
        out.append(f'src = "{v6(rng, 128)}"\ndst = "{v6(rng, 64)}"\nprotocol = "udp"\nports = {rng.randrange(1, 65536)}\n')
    else:  # to a pod from anywhere
        out.append(f'dst = "{v4(rng, 32)}"\nprotocol = "sctp"\n')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--default", choices=["allow", "deny"], default="deny")
    a = p.parse_args()
    rng = random.Random(a.seed)
    w = sys.stdout.write
    w(f'version = {a.version}\ndefault = "{a.default}"\n\n')
    out = []
    for i in range(a.rules):
        rule(rng, out)
        if len(out) > 50_000:
            w("".join(out))
            out.clear()
    w("".join(out))
    w('\n[[service]]\nvip = "10.96.0.10"\nport = 53\nprotocol = "udp"\n'
      'endpoints = [{ ip = "10.244.1.2", port = 5353 }]\n')


if __name__ == "__main__":
    main()
