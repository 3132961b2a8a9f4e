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
PID=$(pgrep -f "$S --data-dir $D")
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }  # broker CPU, in ticks (1/100 s)
native_produce() { $B produce --bootstrap $NATIVE --topic "$1" --partitions 8 --message-size 1024 \
  --messages $N --acks all --quiet --json $D/out.json >/dev/null 2>&1; jq -r .mb_per_sec $D/out.json; }
native_consume() { $B consume --bootstrap $NATIVE --topic "$1" --partitions 8 --message-size 1024 \
  --messages $N --quiet --json $D/out.json >/dev/null 2>&1; jq -r .mb_per_sec $D/out.json; }
kafka_run() { $B kafka --bootstrap $KAFKA --topic "$2" --partitions 8 --message-size 1024 \
  --messages $N --acks all --mode "$1" | jq -r .mb_per_s; }
# Broker CPU seconds per GB moved by one run of "$@".
timed() { local a b out; a=$(cpu); out=$("$@"); b=$(cpu)
  echo "$out MB/s ($(echo "scale=2; ($b - $a) / 100 / ($N * 1024 / 1000000000)" | bc) s broker CPU/GB)"; }
for r in $(seq 1 $R); do
  $K --bootstrap $NATIVE topic create nat-$r --partitions 8 >/dev/null
  $K --bootstrap $NATIVE topic create kaf-$r --partitions 8 >/dev/null
  if (( r % 2 )); then
    np=$(timed native_produce nat-$r); kp=$(timed kafka_run produce kaf-$r)
  else
    kp=$(timed kafka_run produce kaf-$r); np=$(timed native_produce nat-$r)
  fi
  # Both read the same topic, once untimed so both read from the page cache (segments are
  # written with O_DIRECT: a first read comes from the disk), then in alternating order.
  native_consume nat-$r >/dev/null
  if (( r % 2 )); then
    nc=$(timed native_consume nat-$r); kc=$(timed kafka_run consume nat-$r)
  else
    kc=$(timed kafka_run consume nat-$r); nc=$(timed native_consume nat-$r)
  fi
  echo "round $r: produce native $np, kafka $kp; consume native $nc, kafka $kc"
  $K --bootstrap $NATIVE topic delete nat-$r >/dev/null; $K --bootstrap $NATIVE topic delete kaf-$r >/dev/null
done
pkill -f "$S --data-dir $D"; sleep 1; rm -rf $D
