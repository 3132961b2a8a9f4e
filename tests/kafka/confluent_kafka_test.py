"""confluent-kafka (librdkafka) against Keel's Kafka listener, from the client's public API.

Phases: `main` (metadata, topics, keyed idempotent acks=all produce in every codec, consume
from earliest/latest/timestamp, a group of two, configs), `commit` (a group consumes part of
a topic and commits) and `resume` (after a broker restart the group resumes there),
`leader-move` (keeps producing and consuming while the test moves leaders), `group-failover`
(a group reading with a commit per poll while the test kills brokers), `group-stays` (two
members polling while the test kills their coordinator), and `recipe`
(README's three-broker cluster: 10,000 keyed records to a replicated topic, read back)."""
import faulthandler
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import args, check, partition_for  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

bootstrap, phase, prefix = args()
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 4


ADMIN = AdminClient({"bootstrap.servers": bootstrap})


def admin():
    return ADMIN


def create(name, partitions=PARTITIONS):
    for topic, future in admin().create_topics([NewTopic(name, partitions, 1)]).items():
        future.result(10)
    deadline = time.time() + 10
    while name not in admin().list_topics(timeout=5).topics:
        check(time.time() < deadline, f"{name} appears in metadata")
        time.sleep(0.1)


def producer(codec="none"):
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": codec,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    })


def produce(topic, records, codec="none"):
    """Produces (key, value) pairs; returns {key: (partition, offset)}."""
    p = producer(codec)
    delivered, errors = {}, []

    def report(error, message):
        if error:
            errors.append(error)
        else:
            delivered[message.key()] = (message.partition(), message.offset())

    for key, value in records:
        p.produce(topic, key=key, value=value, on_delivery=report)
    check(p.flush(30) == 0, f"{codec}: every record delivered")
    check(not errors, f"{codec}: no delivery errors ({errors[:2]})")
    return delivered


def consume(consumer, count, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            check(False, f"no consume error ({message.error()})")
        got.append(message)
    return got


def main():
    topic, doomed = f"{prefix}-t", f"{prefix}-doomed"
    metadata = admin().list_topics(timeout=10)
    check(len(metadata.brokers) >= 1, "metadata lists the broker")
    create(topic)
    create(doomed, 1)
    for _, future in admin().delete_topics([doomed]).items():
        future.result(10)
    deadline = time.time() + 10
    while doomed in admin().list_topics(timeout=5).topics:
        check(time.time() < deadline, "deleted topic leaves the metadata")
        time.sleep(0.1)
    check(len(admin().list_topics(topic, timeout=5).topics[topic].partitions) == PARTITIONS,
          "the topic has its partitions")

    # Keyed, idempotent, acks=all, every codec; each key on Kafka's murmur2 partition.
    sent = {}
    for codec in CODECS:
        records = [(f"{codec}-key-{i}".encode(), f"{codec}-value-{i}".encode()) for i in range(40)]
        delivered = produce(topic, records, codec)
        for key, (partition, _) in delivered.items():
            expected = partition_for(key, PARTITIONS)
            if partition != expected:
                check(False, f"{key!r} on partition {partition}, murmur2 says {expected}")
        check(len(delivered) == len(records), f"{codec}: every key on its murmur2 partition")
        sent.update({key: value for key, value in records})
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    late = produce(topic, [(b"late-key", b"late-value")])

    # From earliest: everything, in order per partition.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-earliest",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = consume(c, len(sent) + 1)
    c.close()
    check(len(got) == len(sent) + 1, f"earliest: {len(got)} of {len(sent) + 1} records")
    check(all(sent.get(m.key(), b"late-value") == m.value() for m in got), "values intact")
    by_partition = {}
    for m in got:
        by_partition.setdefault(m.partition(), []).append(m.offset())
    check(all(offsets == sorted(offsets) for offsets in by_partition.values()), "offsets in order")

    # By timestamp: the first offset at or after `middle` is the late record's.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-time"})
    partition, offset = late[b"late-key"]
    found = c.offsets_for_times([TopicPartition(topic, partition, middle)], timeout=10)
    check(found[0].offset == offset, f"offset for time {found[0].offset} == {offset}")
    c.close()

    # From latest: only what is produced after the consumer is positioned.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-latest",
                  "auto.offset.reset": "latest", "enable.auto.commit": False})
    c.subscribe([topic])
    deadline = time.time() + 20
    while not c.assignment() and time.time() < deadline:
        c.poll(0.2)
    # Positioned at the end once the reset (ListOffsets latest) is done.
    settle = time.time() + 2
    while time.time() < settle:
        check(c.poll(0.2) is None, "latest: nothing old is read")
    produce(topic, [(b"newest-key", b"newest")])
    got = consume(c, 1)
    c.close()
    check([m.value() for m in got] == [b"newest"], "latest: only the newest record")

    # A group of two shares the partitions; together they read everything once. Static
    # members (group.instance.id) with the cooperative-sticky assignor (the other scripts
    # use their clients' default range and round-robin assignors).
    group = f"{prefix}-pair"
    consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False,
                           "session.timeout.ms": 10000, "group.instance.id": f"{prefix}-static-{i}",
                           "partition.assignment.strategy": "cooperative-sticky"})
                 for i in range(2)]
    for c in consumers:
        c.subscribe([topic])
    total = len(sent) + 2
    seen = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                seen[(m.partition(), m.offset())] = i
        assigned = [set(p.partition for p in c.assignment()) for c in consumers]
        if len(seen) >= total and all(assigned) and not (assigned[0] & assigned[1]):
            break
    assigned = [set(p.partition for p in c.assignment()) for c in consumers]
    check(all(assigned), f"both members have partitions: {assigned}")
    check(not (assigned[0] & assigned[1]), "no partition twice")
    check(assigned[0] | assigned[1] == set(range(PARTITIONS)), "every partition assigned")
    check(len(seen) == total, f"the pair read {len(seen)} of {total} records")
    for c in consumers:
        c.close()

    # Configs.
    resource = ConfigResource("topic", topic)
    configs = admin().describe_configs([resource])[resource].result(10)
    check("retention.ms" in configs, "describe configs lists retention.ms")


def commit():
    topic = f"{prefix}-resume"
    create(topic, 2)
    produce(topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-resume",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = consume(c, 8)
    check(len(got) == 8, "read part of the topic")
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    print("COMMITTED", sorted((p.partition, p.offset) for p in committed), flush=True)
    c.close()


def resume():
    topic = f"{prefix}-resume"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-resume",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    print("COMMITTED", sorted((p.partition, p.offset) for p in committed), flush=True)
    c.subscribe([topic])
    got = consume(c, 12)
    c.close()
    check(len(got) == 12, f"resumed with the remaining 12 records (got {len(got)})")
    starts = {p.partition: p.offset for p in committed}
    check(all(m.offset() >= starts[m.partition()] for m in got), "nothing before the commit")


def leader_move():
    """Produces and consumes for as long as the test says (a file), while leaders move."""
    topic = f"{prefix}-moving"
    stop_file = os.environ["KEEL_STOP_FILE"]
    for _, future in admin().create_topics([NewTopic(topic, 2, 3)]).items():
        future.result(20)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 60000, "retries": 1000000})
    acked, failed = [], []

    def report(error, message):
        (failed if error else acked).append(message.value())

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-moving",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = set()
    i = 0
    deadline = time.time() + 150
    started = time.time()
    while not os.path.exists(stop_file) and time.time() < deadline:
        # About 500 records a second: a steady load, not a flood.
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), on_delivery=report)
        i += 1
        p.poll(0)
        m = c.poll(0)
        if m is not None and m.error() is None:
            seen.add(m.value())
        time.sleep(0.002)
        if i % 500 == 0:
            print(f"PROGRESS t={time.time() - started:.1f}s sent={i} acked={len(acked)} seen={len(seen)}", flush=True)
    check(p.flush(30) == 0, "every record delivered after the moves")
    check(not failed, f"no record failed ({failed[:3]})")
    deadline = time.time() + 30
    while not set(acked) <= seen and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            seen.add(m.value())
    c.close()
    missing = sorted(set(acked) - seen, key=int)
    check(not missing, f"every acknowledged record consumed ({len(seen)} seen, {len(acked)} acked, missing {missing[:10]})")
    print(f"MOVED sent={i} acked={len(acked)}", flush=True)


def recipe():
    """10,000 keyed records to a 6-partition topic with three copies, read back by a group."""
    topic = f"{prefix}-recipe"
    for _, future in admin().create_topics([NewTopic(topic, 6, 3)]).items():
        future.result(30)
    deadline = time.time() + 20
    while len(admin().list_topics(timeout=5).topics.get(topic).partitions or {}) != 6:
        check(time.time() < deadline, f"{topic} has 6 partitions in metadata")
        time.sleep(0.1)
    brokers = admin().list_topics(timeout=5).brokers
    check(len({(b.host, b.port) for b in brokers.values()}) == 3,
          f"three brokers, each at its own Kafka address ({brokers})")
    records = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(10_000)]
    delivered = produce(topic, records)
    check(len(delivered) == len(records), "every record delivered")
    check(all(delivered[k][0] == partition_for(k, 6) for k, _ in records),
          "each key on murmur2's partition")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-recipe",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = consume(c, len(records), timeout=90)
    c.close()
    check(len(got) == len(records), f"read back {len(got)} of {len(records)}")
    check({(m.key(), m.value()) for m in got} == set(records), "every record, none twice")


def group_failover():
    """A group reads the test's topic (named by the prefix) with a commit after every poll
    while the test kills brokers; writes one line per poll for the test to check:
    "committed gap_ms partition:offset ..."."""
    slow_file, seen_file = os.environ["KEEL_SLOW_FILE"], os.environ["KEEL_SEEN_FILE"]
    count = int(os.environ["KEEL_COUNT"])
    # The test gives this phase 400 s and the loop below stops at 360: a call that blocks
    # past 380 s (librdkafka's synchronous commit waits for a coordinator without limit)
    # prints where, for the test's failure message, and ends the process.
    faulthandler.dump_traceback_later(380, exit=True, file=sys.stdout)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    c.subscribe([prefix])
    read = set()
    last = time.time()
    deadline = time.time() + 360
    with open(seen_file, "w") as out:
        while len(read) < count and time.time() < deadline:
            slow = os.path.exists(slow_file)
            messages = [m for m in c.consume(num_messages=4 if slow else 500, timeout=0.5)
                        if m.error() is None]
            if not messages:
                continue
            gap_ms = int((time.time() - last) * 1000)
            last = time.time()
            try:
                c.commit(asynchronous=False)
                committed = 1
            except KafkaException:
                committed = 0
            records = [(m.partition(), m.offset()) for m in messages]
            read.update(records)
            out.write(f"{committed} {gap_ms} " + " ".join(f"{p}:{o}" for p, o in records) + "\n")
            if not committed:
                print(f"{time.strftime('%H:%M:%S')} commit failed after {len(read)} records",
                      flush=True)
            out.flush()
            if slow:
                time.sleep(0.1)
    print(f"{time.strftime('%H:%M:%S')} read {len(read)} of {count}; closing", flush=True)
    c.close()
    faulthandler.cancel_dump_traceback_later()
    check(len(read) == count, f"read {len(read)} of {count} distinct records")


def group_stays():
    """Two members of one group poll the test's topic (named by the prefix) until the test
    removes its stop file; meanwhile the test kills the group's coordinator and checks the
    group keeps its generation and members."""
    stop_file = os.environ["KEEL_STOP_FILE"]
    consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-group",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False,
                           "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
                 for _ in range(2)]
    for c in consumers:
        c.subscribe([prefix])
    deadline = time.time() + 150
    while os.path.exists(stop_file):
        check(time.time() < deadline, "the test ends the phase within 150 s")
        for c in consumers:
            c.poll(0.1)
    for c in consumers:
        c.close()


{"main": main, "commit": commit, "resume": resume, "leader-move": leader_move,
 "recipe": recipe, "group-failover": group_failover, "group-stays": group_stays}[phase]()
print("PASSED", flush=True)
