"""Kafka clients against a SASL_PLAINTEXT, SASL_SSL or SSL listener (tests/tests/sasl.rs,
tls.rs), each through its own public API and its own security settings: `sasl_test.py CLIENT
BOOTSTRAP PHASE PREFIX` with CLIENT confluent-kafka, kafka-python or aiokafka, the mechanism,
user and password in KEEL_SASL_MECHANISM, KEEL_SASL_USER, KEEL_SASL_PASSWORD, the protocol
in KEEL_SECURITY_PROTOCOL (default SASL_PLAINTEXT), the CA the broker's certificate is
checked against in KEEL_SSL_CA and the client's certificate and key (mTLS) in KEEL_SSL_CERT
and KEEL_SSL_KEY. Phases:

`work`: create a topic, produce 100 keyed records (acks=all, idempotent where the client
has it), read them in a group with commits, check the committed offsets, delete the topic.
`refused`: the credentials are wrong (the test passes a wrong password or an unknown user):
the client's usual authentication error, and nothing served.
`reauth` (confluent-kafka): a producer sends a record every 100 ms for 6 s on a broker whose
sessions last 2 s: librdkafka authenticates again (KIP-368) and every record is delivered.
`unauthorized` (confluent-kafka): connected as a principal allowed nothing, creating a topic
gets TOPIC_AUTHORIZATION_FAILED.
`refused-tls` (confluent-kafka): the client's certificate is expired, untrusted or missing:
librdkafka's SSL error, and nothing served."""
import asyncio
import faulthandler
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import check  # noqa: E402

client, bootstrap, phase, prefix = sys.argv[1:5]
# Where a phase blocks, should it (the test kills the script at 180 s).
faulthandler.dump_traceback_later(150, exit=True)
MECHANISM = os.environ.get("KEEL_SASL_MECHANISM", "")
USER = os.environ.get("KEEL_SASL_USER", "")
PASSWORD = os.environ.get("KEEL_SASL_PASSWORD", "")
PROTOCOL = os.environ.get("KEEL_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
SASL = PROTOCOL.startswith("SASL_")
CA, CERT, KEY = (os.environ.get(f"KEEL_SSL_{name}") for name in ("CA", "CERT", "KEY"))
COUNT = 100
TOPIC = f"{prefix}-topic"
GROUP = f"{prefix}-group"


def records():
    return [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(COUNT)]


# confluent-kafka (librdkafka) ------------------------------------------------------------

def ck_config(**extra):
    config = {"bootstrap.servers": bootstrap, "security.protocol": PROTOCOL, **extra}
    if SASL:
        config.update({"sasl.mechanism": MECHANISM, "sasl.username": USER,
                       "sasl.password": PASSWORD})
    if CA:
        config["ssl.ca.location"] = CA
    if CERT:
        config.update({"ssl.certificate.location": CERT, "ssl.key.location": KEY})
    return config


def ck_work():
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient(ck_config())
    for future in admin.create_topics([NewTopic(TOPIC, 2, 1)]).values():
        future.result(15)
    producer = Producer(ck_config(**{"acks": "all", "enable.idempotence": True}))
    errors = []
    for key, value in records():
        producer.produce(TOPIC, key=key, value=value,
                         on_delivery=lambda e, m: e and errors.append(e))
    check(producer.flush(30) == 0 and not errors, f"100 records delivered ({errors[:2]})")
    consumer = Consumer(ck_config(**{"group.id": GROUP, "auto.offset.reset": "earliest",
                                     "enable.auto.commit": False}))
    consumer.subscribe([TOPIC])
    seen, deadline = {}, time.time() + 60
    while len(seen) < COUNT and time.time() < deadline:
        for m in consumer.consume(num_messages=100, timeout=1):
            if m.error() is None:
                seen[m.key()] = m.value()
        if seen:
            consumer.commit(asynchronous=False)
    check(seen == dict(records()), f"the group read every record ({len(seen)})")
    committed = consumer.committed([TopicPartition(TOPIC, p) for p in range(2)], timeout=10)
    check(sum(tp.offset for tp in committed) == COUNT, "the group's offsets are committed")
    consumer.close()
    for future in admin.delete_topics([TOPIC]).values():
        future.result(15)
    check(TOPIC not in admin.list_topics(timeout=10).topics, "the topic is deleted")


def ck_errors_when_refused():
    """The errors librdkafka reports while its metadata request is refused."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    errors = []
    admin = AdminClient(ck_config(error_cb=errors.append))
    try:
        admin.list_topics(timeout=10)
        listed = True
    except KafkaException:
        listed = False
    check(not listed, "metadata is refused")
    deadline = time.time() + 10
    while not errors and time.time() < deadline:
        admin.poll(0.5)  # serves error_cb
    return errors


def ck_refused():
    from confluent_kafka import KafkaError
    errors = ck_errors_when_refused()
    codes = {e.code() for e in errors}
    check(KafkaError._AUTHENTICATION in codes, f"librdkafka reports an authentication error ({errors[:2]})")


def ck_reauth():
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient(ck_config())
    for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        future.result(15)
    producer = Producer(ck_config(**{"acks": "all", "linger.ms": 0}))
    errors, sent, deadline = [], 0, time.time() + 6
    while time.time() < deadline:
        producer.produce(TOPIC, value=f"r{sent}".encode(),
                         on_delivery=lambda e, m: e and errors.append(e))
        sent += 1
        producer.poll(0.1)
    check(producer.flush(30) == 0 and not errors, f"{sent} records delivered across re-authentications ({errors[:2]})")


def ck_unauthorized():
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient(ck_config())
    try:
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
            future.result(15)
        code = None
    except KafkaException as e:
        code = e.args[0].code()
    check(code == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"creating a topic is refused with TOPIC_AUTHORIZATION_FAILED ({code})")


def ck_refused_tls():
    from confluent_kafka import KafkaError
    errors = ck_errors_when_refused()
    said = [e for e in errors if e.code() in (KafkaError._SSL, KafkaError._TRANSPORT)
            and "SSL" in e.str()]
    check(said, f"librdkafka reports an SSL error ({errors[:2]})")


# kafka-python -------------------------------------------------------------------------

def kp_config():
    config = {"bootstrap_servers": bootstrap, "security_protocol": PROTOCOL,
              "sasl_mechanism": MECHANISM, "sasl_plain_username": USER,
              "sasl_plain_password": PASSWORD}
    if CA:
        config["ssl_cafile"] = CA
    return config


def kp_work():
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    admin = KafkaAdminClient(**kp_config())
    admin.create_topics([NewTopic(TOPIC, 2, 1)])
    producer = KafkaProducer(acks="all", **kp_config())
    futures = [producer.send(TOPIC, key=k, value=v) for k, v in records()]
    producer.flush(30)
    check(all(f.succeeded() for f in futures), "100 records delivered")
    producer.close()
    consumer = KafkaConsumer(TOPIC, group_id=GROUP, auto_offset_reset="earliest",
                             enable_auto_commit=False, **kp_config())
    seen, deadline = {}, time.time() + 60
    while len(seen) < COUNT and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=1000).values():
            for m in batch:
                seen[m.key] = m.value
        if seen:
            consumer.commit()
    check(seen == dict(records()), f"the group read every record ({len(seen)})")
    from kafka import TopicPartition
    committed = sum(consumer.committed(TopicPartition(TOPIC, p)) or 0 for p in range(2))
    check(committed == COUNT, "the group's offsets are committed")
    consumer.close()
    admin.delete_topics([TOPIC])
    check(TOPIC not in admin.list_topics(), "the topic is deleted")
    admin.close()


class Logged:
    """Records what a client logs (kafka-python and aiokafka log why a bootstrap failed,
    then raise a bootstrap error)."""

    def __init__(self, logger):
        import logging

        class Handler(logging.Handler):
            def emit(handler, record):
                self.lines.append(record.getMessage())
        self.lines = []
        logging.getLogger(logger).addHandler(Handler(logging.DEBUG))
        logging.getLogger(logger).setLevel(logging.DEBUG)

    def said(self, *words):
        return [line for line in self.lines if any(w in line for w in words)]


def kp_refused():
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, SaslAuthenticationFailedError
    logged = Logged("kafka")
    try:
        KafkaAdminClient(request_timeout_ms=10000, **kp_config()).list_topics()
        check(False, "metadata is refused")
    except SaslAuthenticationFailedError as e:
        check(True, f"kafka-python raises SaslAuthenticationFailedError ({e})")
    except KafkaError as e:
        said = logged.said("SaslAuthenticationFailed", "Authentication failed")
        check(said, f"kafka-python fails ({e!r}) logging the authentication failure")


# aiokafka -----------------------------------------------------------------------------

def ak_config():
    config = {"bootstrap_servers": bootstrap, "security_protocol": PROTOCOL,
              "sasl_mechanism": MECHANISM, "sasl_plain_username": USER,
              "sasl_plain_password": PASSWORD}
    if CA:
        from aiokafka.helpers import create_ssl_context
        config["ssl_context"] = create_ssl_context(cafile=CA)
    return config


async def ak_work():
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(**ak_config())
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, 2, 1)])
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **ak_config())
    await producer.start()
    for k, v in records():
        await producer.send_and_wait(TOPIC, key=k, value=v)
    await producer.stop()
    consumer = AIOKafkaConsumer(TOPIC, group_id=GROUP, auto_offset_reset="earliest",
                                enable_auto_commit=False, **ak_config())
    await consumer.start()
    seen, deadline = {}, time.time() + 60
    while len(seen) < COUNT and time.time() < deadline:
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            for m in batch:
                seen[m.key] = m.value
        if seen:
            await consumer.commit()
    check(seen == dict(records()), f"the group read every record ({len(seen)})")
    committed = [await consumer.committed(TopicPartition(TOPIC, p)) for p in range(2)]
    check(sum(c or 0 for c in committed) == COUNT, "the group's offsets are committed")
    await consumer.stop()
    await admin.delete_topics([TOPIC])
    check(TOPIC not in await admin.list_topics(), "the topic is deleted")
    await admin.close()


async def ak_refused():
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    logged = Logged("aiokafka")
    producer = AIOKafkaProducer(request_timeout_ms=10000, **ak_config())
    try:
        await producer.start()
        await producer.stop()
        check(False, "the producer is refused")
    except KafkaError as e:
        # aiokafka logs the broker's error 58 and raises a bootstrap error.
        said = logged.said("SaslAuthenticationFailed")
        check(said, f"aiokafka fails ({e!r}) logging the authentication failure ({said[:1]})")


PHASES = {
    ("confluent-kafka", "work"): ck_work,
    ("confluent-kafka", "refused"): ck_refused,
    ("confluent-kafka", "refused-tls"): ck_refused_tls,
    ("confluent-kafka", "unauthorized"): ck_unauthorized,
    ("confluent-kafka", "reauth"): ck_reauth,
    ("kafka-python", "work"): kp_work,
    ("kafka-python", "refused"): kp_refused,
    ("aiokafka", "work"): lambda: asyncio.run(ak_work()),
    ("aiokafka", "refused"): lambda: asyncio.run(ak_refused()),
}

PHASES[(client, phase)]()
print("PASSED")
