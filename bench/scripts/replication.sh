#!/bin/bash
# Replication factor 3 against 1 on three brokers sharing this machine: produce MB/s with
# acks=all and acks=1, and end-to-end latency at a fixed rate, in one run.
# Usage: bash bench/scripts/replication.sh [SECONDS]   (release binaries; data in /tmp/keel-rep)
set -u
T=${1:-10}
cd "$(dirname "$0")/../.."
S=target/release/keel-server; K=target/release/keel; B=target/release/keel-bench
D=/tmp/keel-rep; V="1@127.0.0.1:17072,2@127.0.0.1:17172,3@127.0.0.1:17272"
BOOT=127.0.0.1:17000,127.0.0.1:17100,127.0.0.1:17200
pkill -f "$S --node-id" 2>/dev/null; sleep 1; rm -rf $D; mkdir -p $D
for i in 1 2 3; do p=$((17000+100*(i-1)))
  setsid nohup $S --node-id $i --data-dir $D/d$i --listen 127.0.0.1:$p --metrics-listen 127.0.0.1:$((p+1)) --kafka-listen 127.0.0.1:$((p+2)) \
    --controller-voters $V --shards 2 > $D/log$i 2>&1 &
done
sleep 4
$K --bootstrap $BOOT topic create rf1 --partitions 8 --replication-factor 1 >/dev/null
$K --bootstrap $BOOT topic create rf3 --partitions 8 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
sleep 2
for topic in rf1 rf3; do
  for acks in all 1; do
    echo "== produce $topic acks=$acks"
    $B produce --bootstrap $BOOT --topic $topic --partitions 8 --message-size 1024 --duration $T --acks $acks --quiet 2>&1 | tail -1
  done
done
for topic in rf1 rf3; do
  echo "== e2e $topic acks=all at 20,000 msgs/s (20 MB/s)"
  $B e2e --bootstrap $BOOT --topic $topic --partitions 8 --message-size 1024 --duration $T --acks all --rate 20000 --quiet 2>&1 | tail -1
done
pkill -f "$S --node-id"; sleep 1; rm -rf $D
