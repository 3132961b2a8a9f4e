"""aiokafka against Keel's Kafka listener, from the client's public API.

Phases as in confluent_kafka_test.py: `main`, `commit`, `resume`."""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import args, check, partition_for  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: E402

bootstrap, phase, prefix = args()
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 4


async def create(admin, name, partitions=PARTITIONS):
    await admin.create_topics([NewTopic(name, partitions, 1)])
    deadline = time.time() + 10
    while name not in await admin.list_topics():
        check(time.time() < deadline, f"{name} appears in metadata")
        await asyncio.sleep(0.1)


async def produce(topic, records, codec=None):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         compression_type=codec, linger_ms=5)
    await p.start()
    try:
        futures = [(key, await p.send(topic, key=key, value=value)) for key, value in records]
        return {key: await future for key, future in futures}
    finally:
        await p.stop()


def consumer(group, reset="earliest", **extra):
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset=reset,
                            enable_auto_commit=False, **extra)


async def drain(c, count, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        batches = await c.getmany(timeout_ms=500, max_records=count - len(got))
        for records in batches.values():
            got.extend(records)
    return got


async def main(admin):
    topic, doomed = f"{prefix}-t", f"{prefix}-doomed"
    await create(admin, topic)
    await create(admin, doomed, 1)
    await admin.delete_topics([doomed])
    deadline = time.time() + 10
    while doomed in await admin.list_topics():
        check(time.time() < deadline, "deleted topic leaves the metadata")
        await asyncio.sleep(0.1)
    described = await admin.describe_topics([topic])
    check(len(described[0]["partitions"]) == PARTITIONS, "describe topics: partitions")

    sent = {}
    for codec in CODECS:
        records = [(f"{codec}-key-{i}".encode(), f"{codec}-value-{i}".encode()) for i in range(40)]
        delivered = await produce(topic, records, codec)
        wrong = [k for k, m in delivered.items() if m.partition != partition_for(k, PARTITIONS)]
        check(not wrong, f"{codec}: every key on its murmur2 partition ({wrong[:3]})")
        sent.update(records)
    middle = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    late = (await produce(topic, [(b"late-key", b"late-value")]))[b"late-key"]

    c = consumer(f"{prefix}-earliest")
    c.subscribe([topic])
    await c.start()
    got = await drain(c, len(sent) + 1)
    check(len(got) == len(sent) + 1, f"earliest: {len(got)} of {len(sent) + 1}")
    check(all(sent.get(r.key, b"late-value") == r.value for r in got), "values intact")
    tp = TopicPartition(topic, late.partition)
    found = await c.offsets_for_times({tp: middle})
    check(found[tp].offset == late.offset, "offset for time")
    await c.stop()

    c = consumer(f"{prefix}-latest", reset="latest")
    c.subscribe([topic])
    await c.start()
    deadline = time.time() + 20
    while not c.assignment() and time.time() < deadline:
        await c.getmany(timeout_ms=200)
    for partition in c.assignment():
        await c.position(partition)
    await produce(topic, [(b"newest-key", b"newest")])
    got = await drain(c, 1)
    await c.stop()
    check([r.value for r in got] == [b"newest"], "latest: only the newest record")

    group = f"{prefix}-pair"
    pair = [consumer(group, session_timeout_ms=10000, heartbeat_interval_ms=500) for _ in range(2)]
    for c in pair:
        c.subscribe([topic])
        await c.start()
    total = len(sent) + 2
    seen = set()
    deadline = time.time() + 60
    while time.time() < deadline:
        for c in pair:
            for records in (await c.getmany(timeout_ms=200)).values():
                seen.update((r.partition, r.offset) for r in records)
        assigned = [set(tp.partition for tp in c.assignment()) for c in pair]
        if len(seen) >= total and all(assigned) and not (assigned[0] & assigned[1]):
            break
    assigned = [set(tp.partition for tp in c.assignment()) for c in pair]
    check(all(assigned) and not (assigned[0] & assigned[1]), f"the pair shares: {assigned}")
    check(assigned[0] | assigned[1] == set(range(PARTITIONS)), "every partition assigned")
    check(len(seen) == total, f"the pair read {len(seen)} of {total}")
    for c in pair:
        await c.stop()

    configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    check("retention.ms" in str(configs), "describe configs lists retention.ms")


async def commit(admin):
    topic = f"{prefix}-resume"
    await create(admin, topic, 2)
    await produce(topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])
    c = consumer(f"{prefix}-resume")
    c.subscribe([topic])
    await c.start()
    got = await drain(c, 8)
    check(len(got) == 8, f"read part of the topic ({len(got)})")
    await c.commit()
    await c.stop()


async def resume(admin):
    topic = f"{prefix}-resume"
    c = consumer(f"{prefix}-resume")
    c.subscribe([topic])
    await c.start()
    got = await drain(c, 20, timeout=15)
    committed = {p: await c.committed(TopicPartition(topic, p)) for p in range(2)}
    await c.stop()
    print("COMMITTED", committed, flush=True)
    check(all(r.offset >= (committed[r.partition] or 0) for r in got), "nothing before the commit")
    check(len(got) == 12, f"resumed with the remaining 12 records (got {len(got)})")


async def run():
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await {"main": main, "commit": commit, "resume": resume}[phase](admin)
    finally:
        await admin.close()


asyncio.run(run())
print("PASSED", flush=True)
