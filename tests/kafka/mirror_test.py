"""Cluster links through confluent-kafka (tests/tests/mirror.rs):
`mirror_test.py PHASE BOOTSTRAP TOPIC ...`.

`produce BOOTSTRAP TOPIC COUNT START`: COUNT keyed records (values `value-N` from START,
keys over 97 values, a header `n` with N, a timestamp of its own) through three idempotent
producers with acks=all, each compressing with another codec (gzip, lz4, zstd), taking
turns every 100 records.
`consume BOOTSTRAP TOPIC GROUP COUNT`: the group reads COUNT records and commits what it
read; prints the committed offsets as `committed PARTITION OFFSET` lines.
`resume BOOTSTRAP TOPIC GROUP EXPECTED`: the group reads on from its committed offsets
until EXPECTED records came (or 60 s without one); prints `record PARTITION OFFSET VALUE`
lines."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import check  # noqa: E402

from confluent_kafka import Consumer, Producer  # noqa: E402

phase, bootstrap, topic = sys.argv[1:4]


def produce(count, start):
    producers = [Producer({"bootstrap.servers": bootstrap, "acks": "all",
                           "enable.idempotence": True, "compression.type": codec,
                           "linger.ms": 5})
                 for codec in ("gzip", "lz4", "zstd")]
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(error)

    base = 1_700_000_000_000
    for i in range(start, start + count):
        producer = producers[(i // 100) % 3]
        producer.produce(topic, key=f"key-{i % 97}", value=f"value-{i}",
                         headers=[("n", str(i).encode())], timestamp=base + i,
                         on_delivery=delivered)
        producer.poll(0)
    for producer in producers:
        check(producer.flush(60) == 0, "every record delivered")
    check(not failures, f"no delivery failed: {failures[:3]}")


def consumer(group):
    # Small fetches: the records read come from every partition in turn.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "max.partition.fetch.bytes": 2048})


def consume(group, count):
    reader = consumer(group)
    reader.subscribe([topic])
    read = 0
    deadline = time.time() + 60
    while read < count and time.time() < deadline:
        message = reader.poll(1.0)
        if message is None or message.error():
            continue
        read += 1
    check(read == count, f"read {read} of {count}")
    # The positions of what was read: one consumer holds every partition.
    reader.commit(asynchronous=False)
    for tp in reader.committed(reader.assignment(), timeout=10):
        print(f"committed {tp.partition} {tp.offset}")
    reader.close()


def resume(group, expected):
    reader = consumer(group)
    reader.subscribe([topic])
    got = 0
    idle_since = time.time()
    while got < expected and time.time() - idle_since < 60:
        message = reader.poll(1.0)
        if message is None or message.error():
            continue
        idle_since = time.time()
        got += 1
        print(f"record {message.partition()} {message.offset()} {message.value().decode()}")
    reader.close()
    check(got == expected, f"read {got} of {expected}")


if phase == "produce":
    produce(int(sys.argv[4]), int(sys.argv[5]))
elif phase == "consume":
    consume(sys.argv[4], int(sys.argv[5]))
elif phase == "resume":
    resume(sys.argv[4], int(sys.argv[5]))
else:
    check(False, f"unknown phase {phase}")
print("PASSED")
