#!/bin/bash
# What answering acks=1 once the batch is written (not when it is accepted) costs: the same
# produce load against two broker builds, alternating A B A B ..., one fresh broker per run.
# Usage: bash bench/scripts/acks1.sh DIR_A DIR_B [ROUNDS] [SECONDS]
#   DIR_A, DIR_B: directories holding release keel-server and keel-bench of each build
#   (e.g. a worktree of the commit before, built with `cargo build --release`).
# Prints one line per run: build, fsync, acks, MB/s, p50/p99/p99.9 produce latency (us).
set -u
A=$1; B=$2; ROUNDS=${3:-3}; T=${4:-8}
D=/tmp/keel-acks1
run() { # build-dir label fsync acks
  rm -rf $D; mkdir -p $D
  setsid nohup "$1/keel-server" --data-dir $D/data --listen 127.0.0.1:17470 --metrics-listen 127.0.0.1:17471 \
    --kafka-listen off --shards 2 --fsync "$3" > $D/log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" $D/log 2>/dev/null && break; sleep 0.1; done
  "$1/keel-bench" produce --bootstrap 127.0.0.1:17470 --topic acks --partitions 2 --producers 2 \
    --message-size 1024 --duration "$T" --acks "$4" --quiet --json $D/report.json > /dev/null 2>&1
  python3 -c "import json,sys; r=json.load(open('$D/report.json')); l=r['latency_us']; print(f\"$2 fsync=$3 acks=$4 {r['mb_per_sec']:.0f} MB/s p50 {l['p50']} p99 {l['p99']} p999 {l['p999']}\")"
  kill $pid; wait $pid 2>/dev/null
  rm -rf $D
}
for round in $(seq "$ROUNDS"); do
  for fsync in never always; do
    run "$A" A $fsync 1
    run "$B" B $fsync 1
  done
done
