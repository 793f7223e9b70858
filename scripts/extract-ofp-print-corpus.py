#!/usr/bin/env python3
"""Extracts the OpenFlow 1.3 (version 0x04) messages of Open vSwitch's own ofp-print test suite
(`tests/ofp-print.at`) into a corpus for tests/ovs_ofp_print.rs.

Usage: scripts/extract-ofp-print-corpus.py PATH/TO/ofp-print.at OVS_COMMIT > tests/golden/ovs-ofp-print/corpus.txt

Each case is written as
    # <AT_SETUP title>
    [v<N> ]<hex>
(`v<N>` when the test asks ofp-print for verbosity N). Only the hex is taken: the expected text in
the .at file belongs to the OVS version it was written for, so the test compares against the
`ovs-ofctl ofp-print` installed here instead.
"""
import re
import sys


def cases(text):
    for block in re.finditer(r"AT_SETUP\(\[(.*?)\]\)(.*?)AT_CLEANUP", text, re.S):
        title, body = block.group(1), block.group(2)
        pattern = r"ofp-print\s+(\"[^\"]*\"|'[^']*'|[0-9a-fA-F]+)(?:\s+(\d+))?\s*\]"
        for m in re.finditer(pattern, body, re.S):
            raw = m.group(1).strip("\"'").replace("\\\n", " ")
            hexs = re.sub(r"\s+", "", raw)
            if not re.fullmatch(r"[0-9a-fA-F]*", hexs) or len(hexs) < 2 or len(hexs) % 2:
                continue
            yield title, m.group(2), hexs.lower()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8").read()
    print(f"# OpenFlow 1.3 messages of Open vSwitch's tests/ofp-print.at, commit {sys.argv[2]}")
    print("# (https://github.com/openvswitch/ovs, Apache-2.0), extracted by scripts/extract-ofp-print-corpus.py.")
    print("# Test data only: each case is '# title' then '[vN ]hex'. The oracle is the ovs-ofctl installed here.")
    n = 0
    for title, verbosity, hexs in cases(text):
        if not hexs.startswith("04"):
            continue
        print(f"# {title}")
        print(f"v{verbosity} {hexs}" if verbosity else hexs)
        n += 1
    print(f"extracted {n} OpenFlow 1.3 cases", file=sys.stderr)


if __name__ == "__main__":
    main()
