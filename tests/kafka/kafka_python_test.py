"""kafka-python against Keel's Kafka listener, from the client's public API.

Phases as in confluent_kafka_test.py: `main`, `commit`, `resume`; and `compacted` (a topic
with cleanup.policy=compact: the latest value of every key read back after cleaning)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import args, check, partition_for  # noqa: E402

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic  # noqa: E402

bootstrap, phase, prefix = args()
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 4
ADMIN = KafkaAdminClient(bootstrap_servers=bootstrap)


def create(name, partitions=PARTITIONS):
    ADMIN.create_topics([NewTopic(name, partitions, 1)])
    deadline = time.time() + 10
    while name not in ADMIN.list_topics():
        check(time.time() < deadline, f"{name} appears in metadata")
        time.sleep(0.1)


def produce(topic, records, codec=None):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                      compression_type=codec, linger_ms=5)
    futures = [(key, p.send(topic, key=key, value=value)) for key, value in records]
    p.flush()
    delivered = {key: future.get(timeout=30) for key, future in futures}
    p.close()
    return {key: (m.partition, m.offset, m.timestamp) for key, m in delivered.items()}


def consumer(group, reset="earliest", **extra):
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset=reset,
                         enable_auto_commit=False, **extra)


def drain(c, count, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        for records in c.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def main():
    topic, doomed = f"{prefix}-t", f"{prefix}-doomed"
    cluster = ADMIN.describe_cluster()
    check(len(cluster["brokers"]) >= 1, "describe cluster lists the broker")
    create(topic)
    create(doomed, 1)
    ADMIN.delete_topics([doomed])
    deadline = time.time() + 10
    while doomed in ADMIN.list_topics():
        check(time.time() < deadline, "deleted topic leaves the metadata")
        time.sleep(0.1)

    sent = {}
    for codec in CODECS:
        records = [(f"{codec}-key-{i}".encode(), f"{codec}-value-{i}".encode()) for i in range(40)]
        delivered = produce(topic, records, codec)
        wrong = [k for k, (p, _, _) in delivered.items() if p != partition_for(k, PARTITIONS)]
        check(not wrong, f"{codec}: every key on its murmur2 partition ({wrong[:3]})")
        sent.update(records)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    late = produce(topic, [(b"late-key", b"late-value")])

    c = consumer(f"{prefix}-earliest")
    c.subscribe([topic])
    got = drain(c, len(sent) + 1)
    check(len(got) == len(sent) + 1, f"earliest: {len(got)} of {len(sent) + 1}")
    check(all(sent.get(r.key, b"late-value") == r.value for r in got), "values intact")
    partition, offset, _ = late[b"late-key"]
    found = c.offsets_for_times({TopicPartition(topic, partition): middle})
    check(found[TopicPartition(topic, partition)].offset == offset, "offset for time")
    c.close()

    c = consumer(f"{prefix}-latest", reset="latest")
    c.subscribe([topic])
    deadline = time.time() + 20
    while not c.assignment() and time.time() < deadline:
        c.poll(timeout_ms=200)
    for tp in c.assignment():
        c.position(tp)  # resolves the reset to the end now
    produce(topic, [(b"newest-key", b"newest")])
    got = drain(c, 1)
    c.close()
    check([r.value for r in got] == [b"newest"], "latest: only the newest record")

    group = f"{prefix}-pair"
    pair = [consumer(group, session_timeout_ms=10000, heartbeat_interval_ms=500) for _ in range(2)]
    for c in pair:
        c.subscribe([topic])
    total = len(sent) + 2
    seen = set()
    deadline = time.time() + 60
    while time.time() < deadline:
        for c in pair:
            for records in c.poll(timeout_ms=200).values():
                seen.update((r.partition, r.offset) for r in records)
        assigned = [set(tp.partition for tp in c.assignment()) for c in pair]
        if len(seen) >= total and all(assigned) and not (assigned[0] & assigned[1]):
            break
    assigned = [set(tp.partition for tp in c.assignment()) for c in pair]
    check(all(assigned) and not (assigned[0] & assigned[1]), f"the pair shares: {assigned}")
    check(assigned[0] | assigned[1] == set(range(PARTITIONS)), "every partition assigned")
    check(len(seen) == total, f"the pair read {len(seen)} of {total}")
    check(group in str(ADMIN.list_groups()), f"list groups shows {group}")
    described = str(ADMIN.describe_groups([group]))
    check("Stable" in described or "stable" in described.lower(), f"describe groups: {described[:200]}")
    for c in pair:
        c.close()

    configs = ADMIN.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                     config_filter="all")
    check("retention.ms" in str(configs), "describe configs lists retention.ms")
    ADMIN.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "3600000"})])
    modified = ADMIN.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    check("3600000" in str(modified), f"a changed config shows as modified: {modified}")


def commit():
    topic = f"{prefix}-resume"
    create(topic, 2)
    produce(topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])
    c = consumer(f"{prefix}-resume", max_poll_records=4)
    c.subscribe([topic])
    got = drain(c, 8)
    check(len(got) == 8, f"read part of the topic ({len(got)})")
    c.commit()
    print("COMMITTED", sorted((tp.partition, c.committed(tp)) for tp in c.assignment()), flush=True)
    c.close()
    print("READ", len(got), flush=True)


def resume():
    topic = f"{prefix}-resume"
    c = consumer(f"{prefix}-resume")
    c.subscribe([topic])
    got = drain(c, 20, timeout=15)
    committed = {p: c.committed(TopicPartition(topic, p)) for p in range(2)}
    c.close()
    print("COMMITTED", committed, flush=True)
    check(all(offset is not None for offset in committed.values()), "offsets survived the restart")
    check(all(r.offset >= (committed[r.partition] or 0) for r in got), "nothing before the commit")
    check(len(got) == 12, f"resumed with the remaining 12 records (got {len(got)})")


def compacted():
    topic = f"{prefix}-compacted"
    ADMIN.create_topics([NewTopic(topic, 1, 1, topic_configs={
        "cleanup.policy": "compact", "segment.bytes": "16384",
        "min.cleanable.dirty.ratio": "0.01"})])
    deadline = time.time() + 10
    while topic not in ADMIN.list_topics():
        check(time.time() < deadline, f"{topic} appears in metadata")
        time.sleep(0.1)
    keys, rounds = 30, 100
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for r in range(rounds):
        for k in range(keys):
            p.send(topic, key=f"key-{k}".encode(), value=f"value-{r}-{'x' * 50}".encode())
    p.flush()
    written = keys * rounds
    try:
        p.send(topic, key=None, value=b"no key").get(timeout=10)
        check(False, "a record without a key is refused by a compacted topic")
    except Exception as e:  # kafka-python raises InvalidRecordError (87)
        check("InvalidRecord" in type(e).__name__ or "87" in str(e),
              f"a record without a key is refused with INVALID_RECORD ({type(e).__name__}: {e})")
    p.close()
    latest = {f"key-{k}".encode(): f"value-{rounds - 1}-{'x' * 50}".encode() for k in range(keys)}
    deadline = time.time() + 60
    while True:
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                          enable_auto_commit=False, consumer_timeout_ms=3000)
        got = list(c)
        c.close()
        seen = {}
        for m in got:
            seen[m.key] = m.value
        offsets = [m.offset for m in got]
        check(offsets == sorted(set(offsets)), "offsets only grow")
        if len(got) < written // 2:
            break
        check(time.time() < deadline, f"the cleaner removed old values ({len(got)} of {written} left)")
        time.sleep(1)
    check(seen == latest, "the latest value of every key is read back")
    print(f"COMPACTED {len(got)} of {written} records left", flush=True)


{"main": main, "commit": commit, "resume": resume, "compacted": compacted}[phase]()
print("PASSED", flush=True)
