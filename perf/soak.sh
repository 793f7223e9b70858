#!/usr/bin/env bash
# perf/soak.sh: does the daemon stay flat under long mixed traffic?
#
#   perf/soak.sh [--duration SECS] [--warmup SECS] [--interval SECS] [--segment SECS]
#                [--rss-growth-pct N] [--config FILE] [--out DIR] [--build]
#
# Runs the daemon (default perf/configs/shardflow-1shard.toml: 1 shard, embedded allow-all
# policy, docs/pipeline.md's pipeline; another --config must listen on one OpenFlow port: 1 shard
# or mode "single") for --duration seconds (default 600) against:
#   - the perf/ load generator (emulated OVS switches), run again and again in segments of
#     --segment seconds (default 20), alternating throughput mode (4 switches x 8 in flight) and
#     latency mode (2 switches, one in flight). Each segment is a switch reconnect: every
#     emulated switch connects anew, and its 5-tuple sequence starts over, so each segment
#     repeats the first packets of connections the daemon already decided (repeats) and then
#     goes on to new ones (new connections);
#   - REST calls every 2 s: GET /v1/switches, /v1/shards and a flow dump, POST then DELETE of a
#     flow outside the pipeline (table 200, cookie 0x5eed...), GET /metrics.
# Every --interval seconds (default 5) it samples the daemon's VmRSS, thread count, open fds
# (/proc/PID/fd) and from /metrics the gauges of connections and tasks and the decision count.
#
# It prints a table of the samples and fails (exit 1) if, after the warm-up (--warmup, default
# 20 % of the duration), the RSS of the last quarter of the samples grows beyond the first
# quarter's by more than --rss-growth-pct (default 10), or the fd or thread count grows (max of
# the last quarter above max of the first quarter, after letting connection churn settle:
# the comparison is at the samples' maxima, which include the reconnect windows), or the
# daemon dies, or a REST call answers 500.
#
# Binaries: $SF (default target/release/shardflow) and $LOADGEN (default
# target/release/loadgen); --build runs `cargo build --release --workspace` first.
# Results: DIR (default perf/results/soak-<UTC time>/): samples.tsv, rest.tsv, the loadgen
# JSON of each segment, the daemon's log and its /metrics at the end, report.md.
# Every process it starts is stopped on exit (trap); nothing is killed by name.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=600 WARMUP= INTERVAL=5 SEGMENT=20 RSS_PCT=10 BUILD=0 OUT=
CONFIG=$PERF_DIR/configs/shardflow-1shard.toml
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --segment) SEGMENT=$2; shift 2 ;;
    --rss-growth-pct) RSS_PCT=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --build) BUILD=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -n "$WARMUP" ] || WARMUP=$((DURATION / 5))
[ "$WARMUP" -lt "$DURATION" ] || die "--warmup ($WARMUP) must be shorter than --duration ($DURATION)"
OUT=${OUT:-$PERF_DIR/results/soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/loadgen"

if [ "$BUILD" = 1 ]; then
    log "building release binaries (cargo build --release --workspace)"
    (cd "$REPO" && cargo build --release --workspace)
fi
[ -x "$SF" ] || die "$SF missing (cargo build --release, or --build, or SF=...)"
[ -x "$LOADGEN" ] || die "$LOADGEN missing (cargo build --release --workspace, or LOADGEN=...)"

TMP=$(mktemp -d /tmp/sf-soak.XXXXXX)
trap_cleanup
# Private copies: a concurrent cargo build must not swap the binaries under the soak.
cp "$SF" "$TMP/shardflow"; cp "$LOADGEN" "$TMP/loadgen"
SF=$TMP/shardflow LOADGEN=$TMP/loadgen

OFPORT=$(free_port_run 1)
HTTP=127.0.0.1:$(free_port)
# The REST API wants a bearer token (docs/security.md): given to the daemon, sent by `call`.
SHARDFLOW_HTTP_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHARDFLOW_HTTP_TOKEN
bg "$OUT/shardflow.log" "$SF" run --config "$CONFIG" --base-port "$OFPORT" --http "$HTTP"
DAEMON=$BG_PID
wait_port "$OFPORT" 100 "$DAEMON" || die "shardflow did not listen on $OFPORT ($OUT/shardflow.log)"
log "daemon pid $DAEMON, OpenFlow 127.0.0.1:$OFPORT, HTTP $HTTP; soak ${DURATION}s (warm-up ${WARMUP}s)"
START=$(date +%s)
END=$((START + DURATION))

# --- traffic: loadgen segments until the end (each one reconnects every switch) ---
traffic() {
    local n=0 left args lg=
    # Stopped by stop_all (SIGTERM): take the running generator along.
    trap '[ -n "$lg" ] && kill "$lg" 2>/dev/null; exit 0' TERM
    while :; do
        left=$((END - $(date +%s)))
        [ "$left" -gt 3 ] || break
        local seg=$((left - 1 < SEGMENT ? left - 1 : SEGMENT))
        if ((n % 2 == 0)); then
            args=(--mode throughput --switches 4 --window 8)
        else
            args=(--mode latency --switches 2)
        fi
        timeout $((seg + 30)) "$LOADGEN" --controller "127.0.0.1:$OFPORT" "${args[@]}" \
            --duration "$seg" --warmup 1 --json "$OUT/loadgen/segment-$n.json" \
            >"$OUT/loadgen/segment-$n.txt" 2>&1 &
        lg=$!
        wait "$lg" || echo "segment $n: loadgen exit $?" >>"$OUT/loadgen/errors.txt"
        lg=
        n=$((n + 1))
    done
}
bg "$OUT/traffic.log" traffic

# --- REST: every 2 s a round of calls; status of each in rest.tsv ---
rest() {
    local base=http://$HTTP flow='table=200,priority=7,cookie=0x5eed000000000001,ip,nw_dst=192.0.2.1,actions=drop'
    call() { # METHOD PATH [BODY]
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H "Authorization: Bearer $SHARDFLOW_HTTP_TOKEN" -X "$1" ${3:+--data-binary "$3"} "$base$2") || code=000
        printf '%s\t%s\t%s\t%s\n' "$(date +%s)" "$1" "$2" "$code"
    }
    while [ "$(date +%s)" -lt "$END" ]; do
        call GET /v1/switches
        call GET /v1/shards
        call GET /v1/switches/1/flows
        call POST /v1/switches/1/flows "$flow"
        call DELETE '/v1/switches/1/flows?cookie=0x5eed000000000001&table=200'
        call GET /metrics
        sleep 2
    done
}
bg "$OUT/rest.tsv" rest

# --- sampling ---
sample() { # -> one TSV line: t rss_kb threads fds gauges...
    python3 - "$DAEMON" "$HTTP" "$START" <<'PY'
import os, re, sys, time, urllib.request
pid, http, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
status = open(f"/proc/{pid}/status").read()
rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
fds = len(os.listdir(f"/proc/{pid}/fd"))
gauges, decisions = {}, 0
try:
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    for name, value in re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$", text, re.M):
        if name == "shardflow_decisions_total":
            decisions += float(value)
        if kinds.get(name) == "gauge" and re.search(r"connection|task|queue|pending", name):
            gauges[name] = gauges.get(name, 0) + float(value)
except Exception as e:
    gauges["scrape_error"] = 1
print("\t".join([str(int(time.time()) - start), str(rss), str(threads), str(fds), str(int(decisions))]
                + [f"{k.removeprefix('shardflow_')}={v:g}" for k, v in sorted(gauges.items())]))
PY
}
printf 't_s\trss_kb\tthreads\tfds\tdecisions\tgauges\n' >"$OUT/samples.tsv"
while [ "$(date +%s)" -lt "$END" ]; do
    kill -0 "$DAEMON" 2>/dev/null || die "the daemon exited during the soak ($OUT/shardflow.log)"
    line=$(sample) || die "cannot sample the daemon"
    echo "$line" >>"$OUT/samples.tsv"
    log "$(echo "$line" | cut -f1-5 | tr '\t' ' ')"
    sleep "$INTERVAL"
done
# Let the last segment and REST round finish (their loops end at END).
for ((i = 0; i < 400; i++)); do
    jobs_left=0
    for pid in "${BG_PIDS[@]}"; do [ "$pid" = "$DAEMON" ] || ! kill -0 "$pid" 2>/dev/null || jobs_left=1; done
    [ "$jobs_left" = 0 ] && break
    sleep 0.1
done
kill -0 "$DAEMON" 2>/dev/null || die "the daemon exited during the soak ($OUT/shardflow.log)"
curl -s -m 10 "http://$HTTP/metrics" >"$OUT/metrics-end.txt" || true

# --- verdict ---
python3 - "$OUT" "$WARMUP" "$RSS_PCT" "$DURATION" <<'PY'
import glob, json, sys
out, warmup, pct, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rows = [l.rstrip("\n").split("\t") for l in open(f"{out}/samples.tsv")][1:]
samples = [dict(t=int(r[0]), rss=int(r[1]), threads=int(r[2]), fds=int(r[3]), decisions=int(r[4]), gauges=" ".join(r[5:])) for r in rows]
rest = [l.split("\t") for l in open(f"{out}/rest.tsv") if l.strip()]
codes = {}
for r in rest:
    codes[r[3].strip()] = codes.get(r[3].strip(), 0) + 1
segs = []
for f in sorted(glob.glob(f"{out}/loadgen/segment-*.json")):
    try:
        segs.append(json.load(open(f)))
    except Exception:
        pass
lines = ["# soak", "", f"duration {duration} s, warm-up {warmup} s, RSS threshold +{pct:g} %", "",
         "| t (s) | RSS (MiB) | threads | fds | decisions | gauges |", "| ---: | ---: | ---: | ---: | ---: | --- |"]
for s in samples:
    lines.append(f"| {s['t']} | {s['rss']/1024:.1f} | {s['threads']} | {s['fds']} | {s['decisions']} | {s['gauges']} |")
after = [s for s in samples if s["t"] >= warmup]
fail = []
if len(after) < 4:
    fail.append(f"only {len(after)} samples after the warm-up: run longer or sample more often")
else:
    q = max(1, len(after) // 4)
    first, last = after[:q], after[-q:]
    r0, r1 = max(s["rss"] for s in first), max(s["rss"] for s in last)
    growth = 100.0 * (r1 - r0) / r0
    lines += ["", f"RSS after warm-up: first quarter max {r0/1024:.1f} MiB, last quarter max {r1/1024:.1f} MiB ({growth:+.1f} %)"]
    if growth > pct:
        fail.append(f"RSS grew {growth:+.1f} % after the warm-up (threshold {pct:g} %)")
    for k in ("fds", "threads"):
        a, b = max(s[k] for s in first), max(s[k] for s in last)
        lines.append(f"{k}: first quarter max {a}, last quarter max {b}")
        if b > a:
            fail.append(f"{k} grew from {a} to {b} after the warm-up")
answered = sum(s.get("answered", 0) for s in segs)
timeouts = sum(s.get("timeouts", 0) for s in segs)
lines += ["", f"loadgen: {len(segs)} segments (each a reconnect of every switch), answered {answered}, timeouts {timeouts}",
          "REST calls by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))]
if codes.get("500"):
    fail.append(f"{codes['500']} REST calls answered 500")
lines += ["", "verdict: " + ("FAIL: " + "; ".join(fail) if fail else "PASS")]
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if fail else 0)
PY
