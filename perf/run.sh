#!/usr/bin/env bash
# The whole benchmark in one command: shardflow and the os-ken baseline under the same
# emulated-switch load generator (target/release/loadgen), one scenario after the other,
# each with the controller pinned to CPU 1 and the generator to CPU 0, then unpinned.
# Writes perf/results/<UTC timestamp>/ (or --out DIR): report.md, PNG plots, raw JSON,
# latency CDFs, the generator's text output and the controllers' logs.
#
#   perf/run.sh [--quick] [--out DIR] [--no-build] [--pin both|pinned|unpinned] [--only REGEX]
#
#   --quick      3 s per scenario (1 s warm-up) instead of 10 s (2 s warm-up): a smoke run
#   --no-build   use the binaries in target/release as they are
#   --pin        which pinning variants to run (default both)
#   --only       run only the scenarios whose name matches the (bash) regex, e.g. 'osken|sf1'
#
# Scenarios (perf/configs/*.toml; every daemon has the docs/pipeline.md [pipeline]):
#   sf1-tput        shardflow 1 shard, fanout, embedded allow-all, 16 switches x window 64
#   sf1-lat         the same, 1 switch, one packet-in in flight (latency)
#   sf2-fanout-tput 2 shards, fanout: every switch connects to both ports
#   sf2-single-tput 2 shards, single mode: one port, packet-ins handed to the owning shard
#   sf1-cnictl0-tput / sf1-cnictl1-tput
#                   1 shard, [policy] source = "cnictl": every packet-in is a cache miss and one
#                   query to `shardflow cnictl --latency-ms 0` / `--latency-ms 1` (batched:
#                   queries waiting together go in one ExistBatch call)
#   osken-tput / osken-lat
#                   perf/osken/reactive_app.py on os-ken's eventlet hub, same generator
#   sf1-lat-spin    (pinned only) sf1-lat with shards.spin_before_park_us = 100
#   floor-lat       a trivial echo controller (perf/examples/echo_controller), latency mode:
#                   what loopback, wake-ups and the generator cost by themselves, same run
# Every process it starts is stopped on exit (trap); every run is bounded by `timeout`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

QUICK=0
OUT=
BUILD=1
PIN=both
ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --pin) PIN=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$PIN" in both) PINS=(pinned unpinned) ;; pinned|unpinned) PINS=("$PIN") ;; *) die "--pin both|pinned|unpinned" ;; esac
if [ "$QUICK" = 1 ]; then DUR=3; WARM=1; else DUR=10; WARM=2; fi
NCPU=$(nproc)
[ "$NCPU" -ge 2 ] || log "warning: $NCPU CPU: the pinned variant puts both sides on CPU 0"
CTL_CPU=$((NCPU >= 2 ? 1 : 0))
GEN_CPU=0

TS=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$PERF_DIR/results/$TS}
mkdir -p "$OUT/raw" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d /tmp/sf-perf.XXXXXX)
trap_cleanup

if [ "$BUILD" = 1 ]; then
    log "building release binaries (cargo build --release --workspace)"
    (cd "$REPO" && cargo build --release --workspace && cargo build --release -p shardflow-perf --example echo_controller)
fi
ECHO=$REPO/target/release/examples/echo_controller
[ -x "$SF" ] || die "$SF missing (cargo build --release)"
[ -x "$LOADGEN" ] || die "$LOADGEN missing (cargo build --release --workspace)"
SF_VERSION=$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo "?")  # of the tree built
# Private copies: a concurrent cargo build must not swap the binaries between scenarios.
cp "$SF" "$TMP/shardflow"; cp "$LOADGEN" "$TMP/loadgen"
SF=$TMP/shardflow LOADGEN=$TMP/loadgen
if [ -x "$ECHO" ]; then cp "$ECHO" "$TMP/echo_controller"; ECHO=$TMP/echo_controller; fi
log "os-ken venv: $VENV"
"$PERF_DIR/osken/setup.sh" >/dev/null 2>&1 || "$PERF_DIR/osken/setup.sh"
need_pkg gnuplot gnuplot-nox
need_pkg taskset util-linux

# scenarios.tsv: name pin kind description shards mode lgmode pinning-text
INDEX=$OUT/raw/scenarios.tsv
: >"$INDEX"

pin_prefix() { # ROLE(ctl|gen) PIN
    if [ "$2" = pinned ]; then
        if [ "$1" = ctl ]; then echo "taskset -c $CTL_CPU"; else echo "taskset -c $GEN_CPU"; fi
    fi
}

lg_args() { # LGMODE -> loadgen arguments for the mode
    case "$1" in
        tput) echo "--mode throughput --switches 16 --window 64" ;;
        lat) echo "--mode latency --switches 1" ;;
    esac
}

# run_loadgen NAME PIN LGMODE CTL_PID CONTROLLER_ADDR...
run_loadgen() {
    local name=$1 pin=$2 lgmode=$3 pid=$4; shift 4
    local ctl=() a
    for a in "$@"; do ctl+=(--controller "$a"); done
    local connect=()
    if [ $# -gt 1 ]; then connect=(--connect fanout); fi
    # shellcheck disable=SC2046
    run_wait "$OUT/raw/$name.loadgen.txt" timeout $((WARM + DUR + 40)) $(pin_prefix gen "$pin") "$LOADGEN" \
        "${ctl[@]}" "${connect[@]}" $(lg_args "$lgmode") --duration "$DUR" --warmup "$WARM" --proto tcp \
        --json "$OUT/raw/$name.json" --histogram-out "$OUT/raw/$name.cdf" --controller-pid "$pid" \
        || log "  loadgen exited $? (see raw/$name.loadgen.txt)"
    local ans p50
    ans=$(json_get "$OUT/raw/$name.json" answered_per_s)
    p50=$(json_get "$OUT/raw/$name.json" latency.p50_us)
    log "  answered/s ${ans:-?}, p50 ${p50:-?} us"
}

metrics_decisions() { # HTTP -> sum of shardflow_decisions_total (or "")
    python3 - "$1" <<'PY' 2>/dev/null || true
import sys, urllib.request
t = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5).read().decode()
print(int(sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith("shardflow_decisions_total"))))
PY
}

# sf_scenario NAME PIN CONFIG SHARDS OFMODE LGMODE [CNICTL_LATENCY_MS]
sf_scenario() {
    local name=$1 pin=$2 config=$3 shards=$4 ofmode=$5 lgmode=$6 cnl=${7:-}
    local full=$pin-$name
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || return 0
    log "scenario $full"
    local cfg=$TMP/$full.toml
    cp "$PERF_DIR/configs/$config" "$cfg"
    local cnictl_pid= cpin=""
    if [ -n "$cnl" ]; then
        local cport
        cport=$(free_port)
        # shellcheck disable=SC2046
        bg "$OUT/logs/$full.cnictl.log" $(pin_prefix ctl "$pin") "$SF" cnictl --policy "$PERF_DIR/configs/cnictl-policy.toml" \
            --listen "127.0.0.1:$cport" --latency-ms "$cnl" --log-level warn
        cnictl_pid=$BG_PID
        wait_port "$cport" 100 "$cnictl_pid" || die "cnictl did not listen (logs/$full.cnictl.log)"
        sed -i "s|^cnictl = .*|cnictl = \"http://127.0.0.1:$cport\"|" "$cfg"
    fi
    local nports=$shards
    if [ "$ofmode" = single ]; then nports=1; fi
    local base http
    base=$(free_port_run "$nports")
    http=127.0.0.1:$(free_port)
    local pinargs=()
    if [ "$pin" = pinned ]; then
        if [ "$shards" = 1 ]; then pinargs=(--cpus "$CTL_CPU"); fi
        if [ "$shards" = 1 ]; then
            cpin="controller CPU $CTL_CPU (taskset -c $CTL_CPU, --cpus $CTL_CPU)"
        else
            cpin="controller CPU $CTL_CPU (taskset -c $CTL_CPU: its $shards shards share it)"
        fi
        cpin="$cpin, loadgen CPU $GEN_CPU (taskset -c $GEN_CPU)"
        if [ -n "$cnl" ]; then cpin="$cpin, cnictl CPU $CTL_CPU (taskset -c $CTL_CPU)"; fi
    else
        cpin="unpinned (scheduler's choice of $NCPU CPUs)"
    fi
    # shellcheck disable=SC2046
    bg "$OUT/logs/$full.shardflow.log" $(pin_prefix ctl "$pin") "$SF" run --config "$cfg" --base-port "$base" \
        --http "$http" --mode "$ofmode" "${pinargs[@]}"
    local pid=$BG_PID
    local addrs=() i
    for ((i = 0; i < nports; i++)); do
        wait_port $((base + i)) 100 "$pid" || die "shardflow did not listen on $((base + i)) (logs/$full.shardflow.log)"
        addrs+=("127.0.0.1:$((base + i))")
    done
    local c0 t0
    if [ -n "$cnictl_pid" ]; then c0=$(cpu_secs "$cnictl_pid"); t0=$(date +%s.%N); fi
    run_loadgen "$full" "$pin" "$lgmode" "$pid" "${addrs[@]}"
    local cnictl_cpu=
    if [ -n "$cnictl_pid" ]; then
        cnictl_cpu=$(python3 -c 'import sys; a,b,t0,t1=map(float,sys.argv[1:]); print(f"{100*(b-a)/(t1-t0):.0f}")' \
            "${c0:-0}" "$(cpu_secs "$cnictl_pid")" "$t0" "$(date +%s.%N)" 2>/dev/null || true)
    fi
    local dec
    dec=$(metrics_decisions "$http")
    python3 -c 'import sys,urllib.request; open(sys.argv[2],"w").write(urllib.request.urlopen("http://"+sys.argv[1]+"/metrics",timeout=5).read().decode())' \
        "$http" "$OUT/raw/$full.metrics.txt" 2>/dev/null || true
    stop_pid "$pid"
    if [ -n "$cnictl_pid" ]; then stop_pid "$cnictl_pid"; fi
    local desc="shardflow, $shards shard(s), $ofmode"
    if [ -n "$cnl" ]; then desc="$desc, cni-ctl (reference server, +$cnl ms; its CPU ${cnictl_cpu:-?} % over warm-up + run)"; else desc="$desc, embedded allow-all"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$full" "$pin" shardflow "$desc" "$shards" "$ofmode" "$lgmode" "$cpin" "${dec:-}" >>"$INDEX"
}

# osken_scenario NAME PIN LGMODE
osken_scenario() {
    local name=$1 pin=$2 lgmode=$3
    local full=$pin-$name
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || return 0
    log "scenario $full"
    local port
    port=$(free_port)
    # shellcheck disable=SC2046
    OSKEN_QUIET=1 bg "$OUT/logs/$full.osken.log" $(pin_prefix ctl "$pin") "$VENV/bin/python" \
        "$PERF_DIR/osken/run_app.py" --ofp-listen-host 127.0.0.1 --ofp-tcp-listen-port "$port"
    local pid=$BG_PID
    wait_port "$port" 150 "$pid" || die "os-ken did not listen (logs/$full.osken.log)"
    measure_single "$full" "$pin" "$lgmode" "$pid" "$port" osken "os-ken (eventlet hub)"
}

# measure_single FULL PIN LGMODE PID PORT KIND DESC: runs the generator against a one-port
# controller, stops it, and records the scenario with its placement.
measure_single() {
    local full=$1 pin=$2 lgmode=$3 pid=$4 port=$5 kind=$6 desc=$7
    run_loadgen "$full" "$pin" "$lgmode" "$pid" "127.0.0.1:$port"
    stop_pid "$pid"
    local cpin="unpinned (scheduler's choice of $NCPU CPUs)"
    if [ "$pin" = pinned ]; then cpin="controller CPU $CTL_CPU (taskset -c $CTL_CPU), loadgen CPU $GEN_CPU (taskset -c $GEN_CPU)"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$full" "$pin" "$kind" "$desc" 1 - "$lgmode" "$cpin" "" >>"$INDEX"
}

# echo_scenario NAME PIN LGMODE: the floor. A trivial controller (perf/examples/echo_controller:
# blocking threads, answers each PACKET_IN with a PACKET_OUT, no decision, no flows) measured
# the same way: what loopback, wake-ups and the generator cost by themselves, in this run.
echo_scenario() {
    local name=$1 pin=$2 lgmode=$3
    local full=$pin-$name
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || return 0
    [ -x "$ECHO" ] || { log "no echo_controller: floor scenario $full skipped"; return 0; }
    log "scenario $full"
    local port
    port=$(free_port)
    # shellcheck disable=SC2046
    bg "$OUT/logs/$full.echo.log" $(pin_prefix ctl "$pin") "$ECHO" "127.0.0.1:$port"
    local pid=$BG_PID
    wait_port "$port" 100 "$pid" || die "echo_controller did not listen (logs/$full.echo.log)"
    measure_single "$full" "$pin" "$lgmode" "$pid" "$port" echo "floor: echo controller (PACKET_IN -> PACKET_OUT, nothing else)"
}

# Other load on the machine (a shared one: cargo builds...) skews every figure: recorded.
{ echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"; ps -eo comm=,pcpu= --sort=-pcpu | head -5 | tr '\n' ';'; echo; } >"$OUT/raw/load-start.txt"
for pin in "${PINS[@]}"; do
    sf_scenario sf1-tput "$pin" shardflow-1shard.toml 1 fanout tput
    sf_scenario sf1-lat "$pin" shardflow-1shard.toml 1 fanout lat
    if [ "$pin" = pinned ]; then sf_scenario sf1-lat-spin "$pin" shardflow-1shard-spin.toml 1 fanout lat; fi
    sf_scenario sf2-fanout-tput "$pin" shardflow-2shard-fanout.toml 2 fanout tput
    sf_scenario sf2-single-tput "$pin" shardflow-2shard-single.toml 2 single tput
    sf_scenario sf1-cnictl0-tput "$pin" shardflow-cnictl.toml 1 fanout tput 0
    sf_scenario sf1-cnictl1-tput "$pin" shardflow-cnictl.toml 1 fanout tput 1
    osken_scenario osken-tput "$pin" tput
    osken_scenario osken-lat "$pin" lat
    echo_scenario floor-lat "$pin" lat
done

{ echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"; ps -eo comm=,pcpu= --sort=-pcpu | head -5 | tr '\n' ';'; echo; } >"$OUT/raw/load-end.txt"

# ---- report and plots
OSKEN_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("os-ken"))' 2>/dev/null || echo "?")
python3 - "$OUT" "$DUR" "$WARM" "$NCPU" "$OSKEN_VERSION" "$SF_VERSION" "$QUICK" <<'PY'
import json, os, subprocess, sys
out, dur, warm, ncpu, osken_v, sf_v, quick = sys.argv[1:8]
raw = os.path.join(out, "raw")
rows = []
for line in open(os.path.join(raw, "scenarios.tsv")):
    f = line.rstrip("\n").split("\t")
    name, pin, kind, desc, shards, mode, lgmode, pinning, decisions = f
    if kind == "osken":
        desc = f"os-ken {osken_v} (eventlet hub)"
    try:
        j = json.load(open(os.path.join(raw, name + ".json")))
    except Exception:
        j = None
    rows.append(dict(name=name, pin=pin, kind=kind, desc=desc, lgmode=lgmode, pinning=pinning,
                     decisions=decisions, j=j))

def g(j, *ks):
    try:
        for k in ks:
            j = j[k]
        return j
    except Exception:
        return None

def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"

md = []
md.append(f"# shardflow vs os-ken: packet-in benchmark ({os.path.basename(out)})")
md.append("")
md.append(f"shardflow `{sf_v}`, os-ken {osken_v}, load generator `target/release/loadgen` (emulated OVS 3.1 switches, "
          f"OpenFlow 1.3, one TCP SYN per packet-in, every 5-tuple new). {ncpu} CPUs. "
          f"Each scenario: {warm} s warm-up, {dur} s measured{' (--quick)' if quick == '1' else ''}. "
          "An answer = the PACKET_OUT for the packet-in (the 2 FLOW_MODs come before it on the same connection); "
          "latency = packet-in sent -> its PACKET_OUT received, at the generator.")
md.append("")
def decision_mean_us(name):
    """Mean of the daemon's own shardflow_packet_in_decision_seconds (all shards), in us."""
    try:
        tot = cnt = 0.0
        for l in open(os.path.join(raw, name + ".metrics.txt")):
            if l.startswith("shardflow_packet_in_decision_seconds_sum"):
                tot += float(l.split()[-1])
            elif l.startswith("shardflow_packet_in_decision_seconds_count"):
                cnt += float(l.split()[-1])
        return tot / cnt * 1e6 if cnt else None
    except Exception:
        return None

md.append("| scenario | controller | load | answered/s | msgs/s | p50 us | p90 us | p99 us | p99.9 us | max us | ctl CPU % | ctl RSS MB | gen CPU % | timeouts | errors | decisions (metrics) | in-daemon decision, mean us |")
md.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    j = r["j"]
    load = "16 switches x window 64" if r["lgmode"] == "tput" else "1 switch, 1 in flight"
    if j is None:
        md.append(f"| {r['name']} | {r['desc']} | {load} | no result (see raw/{r['name']}.loadgen.txt) |" + " |" * 13)
        continue
    md.append("| " + " | ".join([
        r["name"], r["desc"], load,
        fmt(g(j, "answered_per_s")), fmt(g(j, "messages_per_s")),
        fmt(g(j, "latency", "p50_us")), fmt(g(j, "latency", "p90_us")), fmt(g(j, "latency", "p99_us")),
        fmt(g(j, "latency", "p999_us")), fmt(g(j, "latency", "max_us")),
        fmt(g(j, "controller", "cpu_percent")), fmt(g(j, "controller", "rss_end_mb"), 1),
        fmt(g(j, "generator_cpu_percent")),
        fmt(g(j, "timeouts")), fmt(g(j, "errors_received")),
        r["decisions"] or "-", fmt(decision_mean_us(r["name"]), 1)]) + " |")
md.append("")

md.append("## shardflow / os-ken (same mode, same run)")
md.append("")
md.append("| pinning | comparison | shardflow | os-ken | ratio |")
md.append("| --- | --- | ---: | ---: | ---: |")
by = {r["name"]: r for r in rows}
for pin in ("pinned", "unpinned"):
    o_t, o_l = by.get(f"{pin}-osken-tput"), by.get(f"{pin}-osken-lat")
    for sf_name, label in (("sf1-tput", "answered/s, 1 shard"), ("sf2-fanout-tput", "answered/s, 2 shards fanout"),
                           ("sf2-single-tput", "answered/s, 2 shards single"), ("sf1-cnictl0-tput", "answered/s, 1 shard + cni-ctl 0 ms")):
        s = by.get(f"{pin}-{sf_name}")
        a, b = g(s and s["j"], "answered_per_s"), g(o_t and o_t["j"], "answered_per_s")
        if a is not None and b:
            md.append(f"| {pin} | {label} vs os-ken | {a:,.0f} | {b:,.0f} | **{a / b:.1f}x** |")
    s = by.get(f"{pin}-sf1-lat")
    for p in ("p50_us", "p99_us"):
        a, b = g(s and s["j"], "latency", p), g(o_l and o_l["j"], "latency", p)
        if a and b:
            md.append(f"| {pin} | latency {p[:-3]} (1 switch), os-ken / shardflow | {a:,.0f} us | {b:,.0f} us | **{b / a:.1f}x** lower |")
md.append("")

md.append("## Where each process ran")
md.append("")
md.append("| scenario | placement |")
md.append("| --- | --- |")
for r in rows:
    md.append(f"| {r['name']} | {r['pinning']} |")
md.append("")
def load(f):
    try:
        return open(os.path.join(raw, f)).read().split("\n")[0]
    except Exception:
        return "?"
md.append(f"Machine load (1, 5, 15 min) at the start: {load('load-start.txt')}; at the end: {load('load-end.txt')} "
          "(anything else running, e.g. a cargo build, takes CPU from both sides and shows in every figure; "
          "a *pinned* process cannot move away from it: with one other busy process on its CPU it gets about half of it, "
          "which shows as a controller CPU % near 50).")
md.append("")
md.append("## How to read this")
md.append("")
md.append("- **CPU accounting on loopback.** The generator and the controller talk over 127.0.0.1. The kernel charges most "
          "of the TCP work of a loopback transfer (the sender's `write` runs the whole stack down to the receiver's "
          "socket queue in softirq context on the sending CPU) to the *sender's* CPU and process: the controller's "
          "CPU % includes delivering its FLOW_MODs and PACKET_OUTs into the generator's sockets, and the generator's "
          "includes delivering packet-ins into the controller's. Neither is the cost of a real OVS connection "
          "exactly; compare controllers with each other, not with a CPU budget.")
md.append("- **Pinned** runs put the controller (its shards, or the Python process) on one CPU and the generator on the "
          "other, so they do not compete for a core; a 2-shard daemon pinned that way has *one* CPU for both shards "
          "(the number to read there is the overhead of sharding, not its gain). **Unpinned** runs leave placement to "
          "the scheduler: on this 2-CPU machine the generator, the controller (and cni-ctl) share both CPUs.")
md.append("- **Throughput** (16 switches x 64 packet-ins in flight per connection) is limited by whichever side saturates "
          "first: with the generator on one CPU, a controller at well under 100 % CPU is generator-bound. "
          "**Latency** mode keeps one packet-in in flight, so it is a round trip: generator -> controller decision -> "
          "2 FLOW_MODs + PACKET_OUT back; the idle daemon's wake-up (glommio parking) is part of it.")
md.append("- **cni-ctl scenarios** make every packet-in a cache miss (each 5-tuple is new and the daemon's answer cache "
          "is keyed by the whole query, ports included): one gRPC `Exist` call per packet-in to the reference server "
          "(`shardflow cnictl`), which answers after `--latency-ms`. The daemon queries concurrently "
          "(`policy.max_pending`), so added latency costs latency, not throughput, until in-flight queries run out.")
md.append("- `decisions (metrics)` is the sum of `shardflow_decisions_total` at the end of a shardflow run "
          "(warm-up included): it should be close to answered/s x duration plus the warm-up's. "
          "`in-daemon decision` is the mean of the daemon's own `shardflow_packet_in_decision_seconds` "
          "(packet-in received -> decision sent, warm-up included): the part of the round trip spent inside shardflow; "
          "the rest of the latency is the loopback TCP path, wake-ups and queueing in both processes.")
md.append("")
md.append("Plots: `throughput.png` (answered/s per scenario), `latency-cdf-<pin>.png` (all scenarios' latency CDFs), "
          "`cdf-<scenario>.png` (one per scenario). Raw: `raw/<scenario>.json` (loadgen --json), `.cdf` "
          "(loadgen --histogram-out), `.loadgen.txt`, `.metrics.txt` (shardflow /metrics at the end); logs in `logs/`.")
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")

# gnuplot: bar chart and CDFs
valid = [r for r in rows if r["j"] is not None]
with open(os.path.join(raw, "throughput.dat"), "w") as f:
    for r in valid:
        if r["lgmode"] == "tput":
            f.write(f"\"{r['name']}\" {g(r['j'], 'answered_per_s') or 0}\n")
gp = [ "set terminal pngcairo noenhanced size 1200,650 font ',10'", "set bmargin 9", "set rmargin 12",
       f"set output '{out}/throughput.png'",
       "set title 'answered packet-ins per second (16 switches x window 64; log scale)'",
       "set style fill solid 0.8", "set boxwidth 0.7", "set logscale y", "set grid ytics",
       "set xtics rotate by -35", "set ylabel 'answered/s'", "set yrange [100:*]", "unset key",
       f"plot '{raw}/throughput.dat' using 0:2:xtic(1) with boxes lc rgb '#3070b0', "
       f"'' using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7 font ',9'" ]
def cdf_plot(fname, title, rs):
    lines = ["reset", "set terminal pngcairo noenhanced size 1000,600 font ',10'", f"set output '{fname}'",
             f"set title '{title}'", "set logscale x", "set xlabel 'latency (us, log)'",
             "set ylabel 'percentile'", "set yrange [0:100]", "set grid", "set key bottom right"]
    plots = [f"'{raw}/{r['name']}.cdf' using 2:1 with lines lw 2 title '{r['name']}'"
             for r in rs if os.path.getsize(os.path.join(raw, r['name'] + '.cdf')) > 30]
    if not plots:
        return []
    return lines + ["plot " + ", ".join(plots)]
for pin in ("pinned", "unpinned"):
    rs = [r for r in valid if r["pin"] == pin and os.path.exists(os.path.join(raw, r["name"] + ".cdf"))]
    if rs:
        gp += cdf_plot(f"{out}/latency-cdf-{pin}.png", f"packet-in -> PACKET_OUT latency CDF ({pin})", rs)
for r in valid:
    if os.path.exists(os.path.join(raw, r["name"] + ".cdf")):
        gp += cdf_plot(f"{out}/cdf-{r['name']}.png", f"latency CDF: {r['name']} ({r['desc']})", [r])
open(os.path.join(raw, "plots.gp"), "w").write("\n".join(gp) + "\n")
rc = subprocess.run(["gnuplot", os.path.join(raw, "plots.gp")], capture_output=True, text=True)
if rc.returncode != 0:
    print("gnuplot failed:", rc.stderr, file=sys.stderr)
print("\n".join(md[:md.index("## Where each process ran")]))
PY
log "report: $OUT/report.md"
