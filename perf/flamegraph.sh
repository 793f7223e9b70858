#!/usr/bin/env bash
# A flamegraph of the shardflow daemon under packet-in load.
#
#   perf/flamegraph.sh [--config FILE] [--seconds S] [--out DIR] [--pin] [--call-graph dwarf|fp]
#
# Starts the release daemon (debug=1 is in the release profile: symbols and line tables) with
# perf/configs/shardflow-1shard.toml (default), floods it with target/release/loadgen in
# throughput mode (16 switches x window 64) for S seconds (default 10) and records it with
# `perf record -F 999 -e cpu-clock -g -p PID` (software clock: this VM exposes no hardware
# counters), unwinding stacks with DWARF (`--call-graph dwarf`: Rust release code has no frame
# pointers, so `-g` alone cuts stacks after a frame or two; `--call-graph fp` is that, faster). Writes DIR/flamegraph.svg (inferno), DIR/perf.data, DIR/top-self.txt (the top
# self-time functions, also printed) and DIR/loadgen.txt. DIR defaults to
# perf/results/flamegraph-<UTC timestamp>. --pin: daemon on CPU 1, loadgen on CPU 0.
# Installs linux-perf (apt) and inferno (cargo install inferno) when missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONFIG=$PERF_DIR/configs/shardflow-1shard.toml
SECS=10
OUT=
PIN=0
CALLGRAPH=dwarf
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --pin) PIN=1; shift ;;
        --call-graph) CALLGRAPH=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -x "$SF" ] || die "$SF missing: cargo build --release"
[ -x "$LOADGEN" ] || die "$LOADGEN missing: cargo build --release --workspace"
need_pkg perf linux-perf
export PATH=$PATH:$HOME/.cargo/bin
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    log "installing inferno (cargo install inferno)"
    cargo install --quiet --locked inferno
fi
OUT=${OUT:-$PERF_DIR/results/flamegraph-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d /tmp/sf-flame.XXXXXX)
PERF_PID=
cleanup() {
    local rc=$?
    set +e
    [ -n "$PERF_PID" ] && stop_pid "$PERF_PID" 50
    stop_all
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a private copy: a cargo build replacing target/release/shardflow during the recording
# would make perf resolve the samples against the wrong binary.
cp "$SF" "$TMP/shardflow"
SF=$TMP/shardflow
ctl_pin=() gen_pin=()
if [ "$PIN" = 1 ]; then ctl_pin=(taskset -c 1); gen_pin=(taskset -c 0); fi
SHARDS=$(sed -n 's/^count *= *\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
MODE=$(sed -n 's/^mode *= *"\(.*\)".*/\1/p' "$CONFIG" | head -1)
NPORTS=${SHARDS:-1}
[ "$MODE" = single ] && NPORTS=1
BASE=$(free_port_run "$NPORTS")
HTTP=127.0.0.1:$(free_port)
log "daemon: $CONFIG (shards ${SHARDS:-?}, ${MODE:-fanout}), OpenFlow 127.0.0.1:$BASE.., HTTP $HTTP"
bg "$OUT/shardflow.log" "${ctl_pin[@]}" "$SF" run --config "$CONFIG" --base-port "$BASE" --http "$HTTP"
SF_PID=$BG_PID
ctl=()
for ((i = 0; i < NPORTS; i++)); do
    wait_port $((BASE + i)) 100 "$SF_PID" || die "the daemon did not listen (see $OUT/shardflow.log)"
    ctl+=(--controller "127.0.0.1:$((BASE + i))")
done

# The generator warms up for 2 s; perf records the SECS measured seconds.
bg "$OUT/loadgen.txt" "${gen_pin[@]}" timeout $((SECS + 40)) "$LOADGEN" "${ctl[@]}" --mode throughput --switches 16 --window 64 \
    --warmup 2 --duration "$SECS" --controller-pid "$SF_PID" --json "$OUT/loadgen.json"
LG_PID=$BG_PID
sleep 2
cg=(-g)
[ "$CALLGRAPH" = dwarf ] && cg=(--call-graph dwarf,16384)
log "recording $SECS s: perf record -F 999 -e cpu-clock ${cg[*]} -p $SF_PID"
perf record -F 999 -e cpu-clock "${cg[@]}" -p "$SF_PID" -o "$OUT/perf.data" -- sleep "$SECS" >"$TMP/perf-record.log" 2>&1 &
PERF_PID=$!
rc=0; wait "$PERF_PID" || rc=$?
PERF_PID=
[ $rc = 0 ] || { cat "$TMP/perf-record.log" >&2; die "perf record failed"; }
wait "$LG_PID" || log "loadgen exited $?"
grep -E "answered|latency|controller" "$OUT/loadgen.txt" >&2 || true

log "flamegraph"
perf script -i "$OUT/perf.data" --no-inline 2>/dev/null | inferno-collapse-perf >"$OUT/stacks.folded"
inferno-flamegraph --countname "ns of CPU" --title "shardflow $(basename "$CONFIG" .toml) under loadgen (16 switches x 64, ${SECS} s, cpu-clock 999 Hz)" \
    <"$OUT/stacks.folded" >"$OUT/flamegraph.svg"
perf report -i "$OUT/perf.data" --no-inline --no-children -g none --stdio --sort symbol 2>/dev/null \
    | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' | head -15 >"$OUT/top-self.txt" || true
echo "top 15 functions by self time (perf report --no-children):"
cat "$OUT/top-self.txt"
log "written: $OUT/flamegraph.svg, $OUT/top-self.txt, $OUT/perf.data"
