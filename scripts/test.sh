#!/usr/bin/env bash
# Runs every test of shardflow on this machine: installs Open vSwitch from Debian's packages when
# it is missing (the tests use a real OVS), captures fresh OpenFlow messages from a real OVS, then
# runs the whole cargo test suite (unit, golden-vs-OVS, integration, fuzz-seed smoke).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-ovs.sh
ovs-ofctl --version | head -1

# The real-pod tests (tests/pods_netns.rs) need `ip netns`, ethtool and the reference CNI
# plugins (host-local IPAM in /usr/lib/cni).
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v ethtool >/dev/null || missing+=(ethtool)
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== capturing OpenFlow messages from a real OVS"
# Decoder tests read these next to the committed ones (tests/golden/messages).
scripts/capture-ovs-messages.py target/ovs-captures

echo "== cargo test"
cargo test --workspace --locked --features shardflow/ovs "$@"
