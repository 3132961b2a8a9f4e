#!/bin/bash
# What the log cleaner costs and does: one broker, the same keyed produce load (open loop,
# RATE messages a second of 1 KiB over KEYS keys, acks=all) to a compacted topic and to a
# plain one, alternating, ROUNDS times. Prints per run the produce latency (p50/p99/p99.9,
# us) and the broker's peak RSS; for compacted runs the cleaner's read rate (bytes it read /
# time it spent cleaning, from its log lines) and what it reclaimed.
# Usage: bash bench/scripts/compaction.sh [BIN_DIR] [ROUNDS] [SECONDS] [RATE] [KEYS]
# CLEANER_IO=BYTES sets log_cleaner_io_bytes_per_second (default: the broker's, 64 MiB/s).
set -u
BIN=${1:-target/release}; ROUNDS=${2:-2}; T=${3:-15}; RATE=${4:-40000}; KEYS=${5:-10000}
D=/tmp/keel-compaction
run() { # policy
  rm -rf $D; sync; sleep 2; mkdir -p $D # the last run's files freed before this one starts
  echo "${CLEANER_IO:+log_cleaner_io_bytes_per_second = $CLEANER_IO}" > $D/keel.toml
  KEEL_LOG_CLEANER_BACKOFF_MS=1000 setsid nohup "$BIN/keel-server" --config $D/keel.toml --data-dir $D/data \
    --listen 127.0.0.1:17570 --metrics-listen 127.0.0.1:17571 --kafka-listen off --shards 2 \
    > $D/log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" $D/log 2>/dev/null && break; sleep 0.1; done
  "$BIN/keel" --bootstrap 127.0.0.1:17570 topic create load --partitions 2 \
    --config "cleanup.policy=$1" --config segment.bytes=16777216 \
    --config min.cleanable.dirty.ratio=0.5 > /dev/null
  local peak=0
  ( while kill -0 $pid 2>/dev/null; do
      awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null >> $D/rss; sleep 0.5; done ) &
  local sampler=$!
  "$BIN/keel-bench" produce --bootstrap 127.0.0.1:17570 --topic load --producers 2 \
    --message-size 1024 --duration "$T" --rate "$RATE" --keys "$KEYS" --acks all --quiet \
    --json $D/report.json > /dev/null 2>&1
  sleep 3 # the cleaner's last round on what was written
  peak=$(sort -n $D/rss | tail -1)
  python3 - "$1" "$D" "$peak" <<'PY'
import json, re, sys
policy, d, peak = sys.argv[1], sys.argv[2], int(sys.argv[3] or 0)
r = json.load(open(f"{d}/report.json")); l = r["latency_us"]
line = f"{policy:8} {r['mb_per_sec']:.0f} MB/s p50 {l['p50']} p99 {l['p99']} p999 {l['p999']} us, peak RSS {peak // 1024} MiB"
read = written = took = before = after = 0
pattern = r"bytes_read=(\d+) (?:bytes_written=(\d+) )?bytes_before=(\d+) bytes_after=(\d+) .*took_ms=(\d+)"
for m in re.finditer(pattern, open(f"{d}/log").read()):
    read += int(m[1]); written += int(m[2] or 0); before += int(m[3]); after += int(m[4]); took += int(m[5])
if read:
    line += (f"; cleaner read {read / 2**20:.0f} MiB, wrote {written / 2**20:.0f} MiB, "
             f"{(read + written) / 2**20 / max(took, 1) * 1000:.0f} MiB/s, reclaimed {(before - after) / 2**20:.0f} MiB")
print(line)
PY
  kill $pid; wait $pid 2>/dev/null; kill $sampler 2>/dev/null
  rm -rf $D
}
for round in $(seq "$ROUNDS"); do
  run compact
  run delete
done
