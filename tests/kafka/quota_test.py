"""Client quotas through confluent-kafka (tests/tests/quotas.rs): `quota_test.py BOOTSTRAP
TOPIC RATE`. A producer with client.id `slow` (quota RATE bytes a second, set by the test)
and one with client.id `fast` (no quota) produce 1 KiB records at once: `slow` stays
within 10% of RATE over 30 s; `fast` is not held to it."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import check  # noqa: E402

from confluent_kafka import Producer  # noqa: E402

bootstrap, topic, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
VALUE = b"x" * 1024
SECONDS = 30


def produce(client_id, seconds, limit_bytes, out):
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": client_id,
                         "acks": 1, "linger.ms": 5, "queue.buffering.max.kbytes": 2048})
    delivered = [0]

    def report(error, message):
        if error is None:
            delivered[0] += len(message.value())

    start = time.time()
    sent = 0
    while time.time() - start < seconds and sent < limit_bytes:
        try:
            producer.produce(topic, value=VALUE, on_delivery=report)
            sent += len(VALUE)
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    # Only what was delivered within the time counts.
    deadline = start + seconds
    while delivered[0] < sent and time.time() < deadline:
        producer.poll(0.05)
    out[client_id] = (delivered[0], time.time() - start)
    producer.purge()
    producer.flush(5)


out = {}
slow = threading.Thread(target=produce, args=("slow", SECONDS, 1 << 40, out))
fast = threading.Thread(target=produce, args=("fast", SECONDS, 16 << 20, out))
slow.start()
fast.start()
slow.join()
fast.join()
slow_bytes, slow_seconds = out["slow"]
fast_bytes, fast_seconds = out["fast"]
slow_rate = slow_bytes / SECONDS
fast_rate = fast_bytes / fast_seconds
print(f"slow: {slow_bytes} bytes in {SECONDS} s = {slow_rate:.0f} B/s (quota {rate:.0f}); "
      f"fast: {fast_bytes} bytes in {fast_seconds:.1f} s = {fast_rate:.0f} B/s", flush=True)
check(abs(slow_rate - rate) <= 0.1 * rate, "the quotaed producer is within 10% of its rate")
check(fast_rate >= 3 * rate, "the producer without a quota is not held to it")
print("PASSED")
