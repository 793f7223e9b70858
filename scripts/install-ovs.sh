#!/usr/bin/env bash
# Installs Open vSwitch from Debian's packages when ovs-vswitchd or ovs-ofctl is missing.
set -euo pipefail
if command -v ovs-vswitchd >/dev/null && command -v ovs-ofctl >/dev/null; then
    exit 0
fi
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
echo "== installing Open vSwitch (Debian packages)"
as_root apt-get update -qq
# The package's start script is refused in containers ("policy-rc.d denied execution of start"):
# harmless, the scripts start private daemons themselves.
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-switch >/dev/null
