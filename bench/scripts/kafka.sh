#!/bin/bash
# The Kafka listener against the native protocol on one broker, in one run: produce
# (acks=all, fsync=always, 8 partitions, 1 KiB) and consume MB/s, keel-bench's native
# client beside librdkafka (keel-bench kafka, the rdkafka crate), in alternating order.
# Usage: bash bench/scripts/kafka.sh [ROUNDS] [MESSAGES]
#   needs librdkafka-dev (1.9+); builds release binaries; data in /tmp/keel-kafka-bench
set -u
R=${1:-3}; N=${2:-500000}
cd "$(dirname "$0")/../.."
cargo build --release -q -p keel-server -p keel
cargo build --release -q -p keel-bench --features kafka
S=target/release/keel-server; K=target/release/keel; B=target/release/keel-bench
D=/tmp/keel-kafka-bench; NATIVE=127.0.0.1:18000; KAFKA=127.0.0.1:18002
pkill -f "$S --data-dir $D" 2>/dev/null; sleep 1; rm -rf $D; mkdir -p $D
setsid nohup $S --data-dir $D/data --listen $NATIVE --metrics-listen 127.0.0.1:18001 \
  --kafka-listen $KAFKA > $D/log 2>&1 &
sleep 2
native_produce() { $B produce --bootstrap $NATIVE --topic "$1" --partitions 8 --message-size 1024 \
  --messages $N --acks all --quiet --json $D/out.json >/dev/null 2>&1; jq -r .mb_per_sec $D/out.json; }
native_consume() { $B consume --bootstrap $NATIVE --topic "$1" --partitions 8 --message-size 1024 \
  --messages $N --quiet --json $D/out.json >/dev/null 2>&1; jq -r .mb_per_sec $D/out.json; }
kafka_run() { $B kafka --bootstrap $KAFKA --topic "$2" --partitions 8 --message-size 1024 \
  --messages $N --acks all --mode "$1" | jq -r .mb_per_s; }
for r in $(seq 1 $R); do
  $K --bootstrap $NATIVE topic create nat-$r --partitions 8 >/dev/null
  $K --bootstrap $NATIVE topic create kaf-$r --partitions 8 >/dev/null
  if (( r % 2 )); then
    np=$(native_produce nat-$r); kp=$(kafka_run produce kaf-$r)
    nc=$(native_consume nat-$r); kc=$(kafka_run consume kaf-$r)
  else
    kp=$(kafka_run produce kaf-$r); np=$(native_produce nat-$r)
    kc=$(kafka_run consume kaf-$r); nc=$(native_consume nat-$r)
  fi
  echo "round $r: produce native $np kafka $kp MB/s; consume native $nc kafka $kc MB/s"
  $K --bootstrap $NATIVE topic delete nat-$r >/dev/null; $K --bootstrap $NATIVE topic delete kaf-$r >/dev/null
done
pkill -f "$S --data-dir $D"; sleep 1; rm -rf $D
