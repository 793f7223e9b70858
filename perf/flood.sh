#!/usr/bin/env bash
# perf/flood.sh: a packet-in flood against one shard, with ARP mixed in. Does the daemon's
# memory stay bounded, is ARP still answered, are drops counted?
#
# The daemon: docs/pipeline.md's example (1 shard, fan-out, arp = "controller", embedded
# allow-all policy), pinned to CPU 1; the generator: target/release/loadgen --mode flood (16
# emulated switches writing packet-ins of new TCP connections as fast as the daemon takes them,
# no window), every --arp-every'th packet-in an ARP request for a configured pod, pinned to
# CPU 0. Two runs:
#   unlimited  the default [pipeline.shard_limits] (new connections unlimited): the shard decides
#              all it can; the rest of the flood waits in the socket (TCP backpressure)
#   limited    [pipeline.shard_limits] new_connections_pps = --limit (default 40000, a tenth of
#              the ~400 k/s one shard decides): the excess is dropped after parsing and counted
# Each: warm-up, then --duration seconds measured; the daemon's VmRSS sampled every 0.5 s from
# start to end; its /metrics at the end (packet_in_total, packet_in_dropped_total{cause},
# decisions_total). Report: OUT/flood.md.
#
#   perf/flood.sh [--no-build] [--duration S] [--limit N] [--arp-every N] [--out DIR]
#
# Everything on 127.0.0.1; every process started here is stopped by the exit trap.
set -euo pipefail
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD=1 DUR=10 WARM=2 LIMIT=40000 ARP_EVERY=1000 OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --duration) DUR=$2; shift ;;
        --limit) LIMIT=$2; shift ;;
        --arp-every) ARP_EVERY=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
OUT=${OUT:-$PERF_DIR/results/flood-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
NCPU=$(nproc)
CTL_CPU=1 GEN_CPU=0
if [ "$NCPU" -lt 2 ]; then CTL_CPU=0; fi

TMP=$(mktemp -d /tmp/sf-flood.XXXXXX)
trap_cleanup

if [ "$BUILD" = 1 ]; then
    log "building release binaries (cargo build --release --workspace)"
    (cd "$REPO" && cargo build --release --workspace)
fi
[ -x "$SF" ] || die "$SF missing (cargo build --release)"
[ -x "$LOADGEN" ] || die "$LOADGEN missing (cargo build --release --workspace)"
need_pkg taskset util-linux
cp "$SF" "$TMP/shardflow"; cp "$LOADGEN" "$TMP/loadgen"
SF=$TMP/shardflow LOADGEN=$TMP/loadgen
SF_VERSION=$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo "?")

# config FILE NEW_CONNECTIONS_PPS: the example, 1 shard, ARP to the controller, the shard limit.
config() {
    pipeline_toml "$1"
    python3 - "$1" "$2" <<'PY'
import sys
path, limit = sys.argv[1], sys.argv[2]
t = open(path).read()
t = t.replace("count = 2\n", "count = 1\nio_memory = 1048576\n", 1)
t = t.replace("learn_hard_timeout = 0\n", 'learn_hard_timeout = 0\narp = "controller"\n', 1)
t = t.replace("[pipeline.meters]\n", f"[pipeline.shard_limits]\nnew_connections_pps = {limit}\n\n[pipeline.meters]\n", 1)
t += '\n[log]\nlevel = "warn"\n'
open(path, "w").write(t)
PY
}

# sample_rss PID FILE: VmRSS (kB) every 0.5 s while PID lives.
sample_rss() {
    local pid=$1 file=$2
    while kill -0 "$pid" 2>/dev/null; do
        awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null >>"$file" || true
        sleep 0.5
    done
}

# run_flood NAME LIMIT
run_flood() {
    local name=$1 limit=$2
    log "flood $name (shard_limits.new_connections_pps = $limit; 0 = none)"
    local cfg=$TMP/$name.toml
    config "$cfg" "$limit"
    cp "$cfg" "$OUT/$name.toml"
    local base http
    base=$(free_port_run 1)
    http=127.0.0.1:$(free_port)
    bg "$OUT/$name.shardflow.log" taskset -c "$CTL_CPU" "$SF" run --config "$cfg" --base-port "$base" --http "$http" \
        --cpus "$CTL_CPU"
    local pid=$BG_PID
    wait_port "$base" 100 "$pid" || die "shardflow did not listen (see $OUT/$name.shardflow.log)"
    : >"$OUT/$name.rss"
    bg /dev/null sample_rss "$pid" "$OUT/$name.rss"
    local sampler=$BG_PID
    run_wait "$OUT/$name.loadgen.txt" timeout $((WARM + DUR + 40)) taskset -c "$GEN_CPU" "$LOADGEN" \
        --controller "127.0.0.1:$base" --mode flood --switches 16 --arp-every "$ARP_EVERY" --proto tcp \
        --duration "$DUR" --warmup "$WARM" --json "$OUT/$name.json" --controller-pid "$pid" \
        || log "  loadgen exited $? (see $OUT/$name.loadgen.txt)"
    python3 -c 'import sys,urllib.request; open(sys.argv[2],"w").write(urllib.request.urlopen("http://"+sys.argv[1]+"/metrics",timeout=5).read().decode())' \
        "$http" "$OUT/$name.metrics.txt" || log "  /metrics unreadable"
    stop_pid "$pid"
    stop_pid "$sampler" 5
}

run_flood unlimited 0
run_flood limited "$LIMIT"

python3 - "$OUT" "$SF_VERSION" "$DUR" "$WARM" "$ARP_EVERY" "$NCPU" <<'PY'
import json, re, sys
out, version, dur, warm, arp_every, ncpu = sys.argv[1:]
def metrics(name):
    m = {}
    for l in open(f"{out}/{name}.metrics.txt"):
        if l.startswith("#"):
            continue
        k, v = l.rsplit(" ", 1)
        m[k] = float(v)
    return m
def total(m, prefix, needle=""):
    return int(sum(v for k, v in m.items() if k.startswith(prefix) and needle in k))
rows = []
for name, what in (("unlimited", "default limits (new connections unlimited)"), ("limited", "shard_limits.new_connections_pps set")):
    j = json.load(open(f"{out}/{name}.json"))
    m = metrics(name)
    rss = [int(x) for x in open(f"{out}/{name}.rss").read().split()]
    drops = {c: total(m, "shardflow_packet_in_dropped_total", f'cause="{c}"')
             for c in ("rate_new_connection", "rate_arp", "rate_other", "held_full", "invalid")}
    limit = re.search(r"new_connections_pps = (\d+)", open(f"{out}/{name}.toml").read()).group(1)
    rows.append((name, what, limit, j, m, rss, drops))
md = [f"# packet-in flood, shardflow `{version}`", "",
      f"`perf/flood.sh`: 1 shard (CPU 1, `--cpus 1`), docs/pipeline.md's example with `arp = \"controller\"`, "
      f"embedded allow-all; `loadgen --mode flood --switches 16 --arp-every {arp_every}` on CPU 0; {warm} s warm-up, "
      f"{dur} s measured. {ncpu} CPUs, shared with other work: figures are indicative. One shard decides "
      "~400 k packet-ins/s here (perf/results/2026-12-06, pinned-sf1-tput).", "",
      "| run | new_connections_pps | packet-ins sent/s | answered (PACKET_OUT)/s | decisions | dropped: rate_new_connection | rate_arp | held_full | ARP sent | ARP answered | ARP p50 / p99 / max us | daemon RSS min / max / end MB | daemon CPU % |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
for name, what, limit, j, m, rss, drops in rows:
    sent_s = j["packet_ins_sent"] / max(j["duration_s"], 1e-9)
    a = j["arp_latency"]
    mb = lambda kb: f"{kb / 1024:.1f}"
    rss_t = f"{mb(min(rss))} / {mb(max(rss))} / {mb(rss[-1])}" if rss else "n/a"
    cpu = (j.get("controller") or {}).get("cpu_percent")
    md.append(f"| {name} | {limit or 'none'} | {sent_s:,.0f} | {j['packet_outs_per_s']:,.0f} | "
              f"{total(m, 'shardflow_decisions_total'):,} | {drops['rate_new_connection']:,} | {drops['rate_arp']:,} | "
              f"{drops['held_full']:,} | {j['arp_sent']:,} | {j['arp_answered']:,} | "
              f"{a['p50_us']:,.0f} / {a['p99_us']:,.0f} / {a['max_us']:,.0f} | {rss_t} | {cpu} |")
md += ["", "Counters are the daemon's over its whole life (warm-up included); sent/s, answered/s and ARP are "
       "the generator's over the measured interval. RSS from /proc/PID/status every 0.5 s, start to stop.", ""]
open(f"{out}/flood.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
log "report: $OUT/flood.md"
