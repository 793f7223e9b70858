#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the golden files:
# captured OpenFlow messages and golden FLOW_MODs for openflow_decode, golden flow texts for
# flow_text; and, through tests/fuzz_seeds.rs (SHARDFLOW_FUZZ_CORPUS), frames from the packet
# builders for packet_parse, OVS byte streams with schedules for session, policy files for
# policy_file, REST requests for rest and dpctl/dump-flows captures for dpctl_text.
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
mkdir -p "$C/openflow_decode" "$C/flow_text" "$C/packet_parse" "$C/session" "$C/policy_file" "$C/rest" "$C/dpctl_text"
for f in tests/golden/messages/*.hex; do
    xxd -r -p "$f" > "$C/openflow_decode/$(basename "$f" .hex)"
done
cargo build --quiet --bin shardflow
n=0
for f in tests/golden/*.flows; do
    while IFS= read -r line; do
        line=${line%% # *}
        [ -z "${line// }" ] && continue
        case "$line" in \#*) continue ;; esac
        n=$((n + 1))
        printf '%s' "$line" > "$C/flow_text/golden-$n"
        # The same flow as OVS encodes it seeds the decoder.
        target/debug/shardflow flow encode "$line" 2>/dev/null | xxd -r -p > "$C/openflow_decode/flow-$n" || true
    done < "$f"
done
SHARDFLOW_FUZZ_CORPUS="$PWD/$C" cargo test --quiet --test fuzz_seeds -- \
    packet_parse session policy_file rest dpctl_text >/dev/null
for t in openflow_decode flow_text packet_parse session policy_file rest dpctl_text; do
    printf '%s: %s seeds\n' "$t" "$(ls "$C/$t" | wc -l)"
done
