"""ACLs through confluent-kafka (tests/tests/acls.rs): `acl_test.py BOOTSTRAP PHASE` against
a SASL_PLAINTEXT listener with the authorizer on, `User:admin` a super user, alice and
bob SCRAM-SHA-512 users (passwords `NAME-secret`).

`setup` (admin): topics orders.eu, orders.secret and payments with 10 records each; ACLs:
alice may READ topics prefixed `orders.` and the group `alice-group`; alice may not READ
orders.secret (DENY beats ALLOW).
`alice`: alice reads orders.eu in alice-group and commits; every other API answers
Kafka's authorization error: produce, orders.secret, another group, payments (unknown to
her), create and delete topics, configs, ACLs.
`lift` (admin): the DENY removed; alice reads orders.secret.
`users` (admin): carol is made with AlterUserScramCredentials (the client salts her
password), described, authenticates, and once deleted is refused; alice may not change
users.
`kept` (admin, after a restart): the two ALLOW bindings are still there.
On a cluster (tests/tests/cluster_security.rs), each phase through one broker:
`make-carol` (admin): carol is made with AlterUserScramCredentials.
`survived`: carol authenticates (and not with a wrong password), the three ACLs are
described, alice still may not read orders.secret."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import check  # noqa: E402

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
    ConfigResource, NewTopic, ResourcePatternType, ResourceType)

bootstrap, phase = sys.argv[1:3]
TOPICS = ["orders.eu", "orders.secret", "payments"]


def config(user, **extra):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": f"{user}-secret", **extra}


def acl(resource, name, pattern, operation, permission, principal="User:alice"):
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


ALLOW_ORDERS = acl(ResourceType.TOPIC, "orders.", ResourcePatternType.PREFIXED,
                   AclOperation.READ, AclPermissionType.ALLOW)
ALLOW_GROUP = acl(ResourceType.GROUP, "alice-group", ResourcePatternType.LITERAL,
                  AclOperation.READ, AclPermissionType.ALLOW)
DENY_SECRET = acl(ResourceType.TOPIC, "orders.secret", ResourcePatternType.LITERAL,
                  AclOperation.READ, AclPermissionType.DENY)
EVERY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)


def code_of(future):
    """The error a future failed with; for an answer with per-partition errors (offsets
    altered), the first partition's."""
    try:
        result = future.result(15)
    except KafkaException as e:
        return e.args[0].code()
    partitions = getattr(result, "topic_partitions", None) or []
    errors = [p.error.code() for p in partitions if p.error is not None]
    return errors[0] if errors else None


def read(user, topic, group, count=10, timeout=30):
    """(records read, the first error) of `group` reading `topic` from the start."""
    consumer = Consumer(config(user, **{"group.id": group, "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False}))
    consumer.subscribe([topic])
    records, error, deadline = [], None, time.time() + timeout
    while len(records) < count and error is None and time.time() < deadline:
        for m in consumer.consume(num_messages=count, timeout=1):
            if m.error() is None:
                records.append(m.value())
            elif m.error().code() != KafkaError._PARTITION_EOF:
                error = m.error().code()
    if records and error is None:
        consumer.commit(asynchronous=False)
    consumer.close()
    return records, error


def setup():
    admin = AdminClient(config("admin"))
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in TOPICS]).values():
        future.result(15)
    producer = Producer(config("admin", **{"acks": "all"}))
    for topic in TOPICS:
        for i in range(10):
            producer.produce(topic, key=f"k{i}", value=f"{topic}-{i}")
    check(producer.flush(30) == 0, "the admin produced to every topic")
    for future in admin.create_acls([ALLOW_ORDERS, ALLOW_GROUP, DENY_SECRET]).values():
        future.result(15)
    described = admin.describe_acls(EVERY_ACL).result(15)
    check(sorted(map(str, described)) == sorted(map(str, [ALLOW_ORDERS, ALLOW_GROUP, DENY_SECRET])),
          f"the three ACLs are described ({described})")


def alice():
    records, error = read("alice", "orders.eu", "alice-group")
    check(len(records) == 10 and error is None, f"alice reads orders.eu ({len(records)}, {error})")
    admin = AdminClient(config("alice"))
    topics = admin.list_topics(timeout=10).topics
    check("payments" not in topics and "orders.eu" in topics,
          f"alice's metadata lists the topics she may describe ({sorted(topics)})")
    committed = Consumer(config("alice", **{"group.id": "alice-group"}))
    from confluent_kafka import TopicPartition
    offsets = committed.committed([TopicPartition("orders.eu", p) for p in range(2)], timeout=10)
    check(sum(tp.offset for tp in offsets) == 10, "alice's group committed its offsets")
    # A named topic she may not describe: TOPIC_AUTHORIZATION_FAILED, not "no offset".
    try:
        denied = committed.committed([TopicPartition("payments", 0)], timeout=10)
        code = denied[0].error.code() if denied[0].error else denied[0].offset
    except KafkaException as e:
        code = e.args[0].code()
    check(code == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"an undescribable topic's committed offset is refused ({code})")
    committed.close()

    _, error = read("alice", "orders.secret", "alice-group", timeout=15)
    check(error == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"DENY beats ALLOW ({error})")
    _, error = read("alice", "orders.eu", "another-group", timeout=15)
    check(error == KafkaError.GROUP_AUTHORIZATION_FAILED, f"another group is refused ({error})")

    errors = []
    producer = Producer(config("alice", **{"acks": "all", "enable.idempotence": False,
                                           "message.timeout.ms": 10000}))
    producer.produce("orders.eu", value=b"x",
                     on_delivery=lambda e, m: errors.append(e.code() if e else None))
    producer.flush(15)
    check(errors == [KafkaError.TOPIC_AUTHORIZATION_FAILED], f"produce is refused ({errors})")
    failures = []
    idempotent = Producer(config("alice", **{"enable.idempotence": True,
                                             "message.timeout.ms": 10000,
                                             "error_cb": lambda e: failures.append(e.code())}))
    try:
        idempotent.produce("orders.eu", value=b"x")
        idempotent.flush(15)
    except KafkaException as e:
        failures.append(e.args[0].code())
    check(KafkaError.CLUSTER_AUTHORIZATION_FAILED in failures,
          f"an idempotent producer gets no producer id ({failures})")

    code = code_of(admin.create_topics([NewTopic("orders.new", 1, 1)])["orders.new"])
    check(code == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"create topic refused ({code})")
    code = code_of(admin.delete_topics(["orders.eu"])["orders.eu"])
    check(code == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"delete a described topic ({code})")
    code = code_of(admin.delete_topics(["payments"])["payments"])
    check(code == KafkaError.UNKNOWN_TOPIC_OR_PART, f"an undescribable topic looks unknown ({code})")
    resource = ConfigResource(ConfigResource.Type.TOPIC, "orders.eu")
    code = code_of(admin.describe_configs([resource])[resource])
    check(code == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"describe configs refused ({code})")
    futures = admin.create_acls([acl(ResourceType.TOPIC, "payments", ResourcePatternType.LITERAL,
                                     AclOperation.READ, AclPermissionType.ALLOW)])
    code = code_of(next(iter(futures.values())))
    check(code == KafkaError.CLUSTER_AUTHORIZATION_FAILED, f"alice may not grant ({code})")
    others(admin)
    # librdkafka drops DescribeAcls' response-level error (kafka-python raises
    # ClusterAuthorizationFailedError): nothing is listed either way.
    try:
        listed = admin.describe_acls(EVERY_ACL).result(15)
    except KafkaException as e:
        listed = e.args[0].code()
    check(listed in ([], KafkaError.CLUSTER_AUTHORIZATION_FAILED),
          f"alice may not list ACLs ({listed})")


def others(admin):
    """Every other API alice's admin client can send, each refused with Kafka's code."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, NewPartitions
    refusals = {
        "create partitions": (lambda: admin.create_partitions([NewPartitions("orders.eu", 4)]),
                              KafkaError.TOPIC_AUTHORIZATION_FAILED),
        "delete records": (lambda: admin.delete_records([TopicPartition("orders.eu", 0, 1)]),
                           KafkaError.TOPIC_AUTHORIZATION_FAILED),
        "alter configs": (lambda: admin.alter_configs([ConfigResource(
            ConfigResource.Type.TOPIC, "orders.eu", set_config={"retention.ms": "1"})]),
                          KafkaError.TOPIC_AUTHORIZATION_FAILED),
        "incremental alter configs": (lambda: admin.incremental_alter_configs([ConfigResource(
            ConfigResource.Type.TOPIC, "orders.eu", incremental_configs=[ConfigEntry(
                "retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])]),
                                      KafkaError.TOPIC_AUTHORIZATION_FAILED),
        "describe another group": (lambda: admin.describe_consumer_groups(["another-group"]),
                                   KafkaError.GROUP_AUTHORIZATION_FAILED),
        "delete her group": (lambda: admin.delete_consumer_groups(["alice-group"]),
                             KafkaError.GROUP_AUTHORIZATION_FAILED),
        "commit to payments": (lambda: admin.alter_consumer_group_offsets([
            ConsumerGroupTopicPartitions("alice-group", [TopicPartition("payments", 0, 1)])]),
                               KafkaError.TOPIC_AUTHORIZATION_FAILED),
        "delete ACLs": (lambda: admin.delete_acls([EVERY_ACL]),
                        KafkaError.CLUSTER_AUTHORIZATION_FAILED),
    }
    for what, (send, expected) in refusals.items():
        futures = send()
        futures = futures.values() if isinstance(futures, dict) else [futures]
        codes = {code_of(f) for f in futures}
        check(codes == {expected}, f"{what} refused with {expected} ({codes})")
    groups = admin.list_consumer_groups().result(15).valid
    check([g.group_id for g in groups] == ["alice-group"], f"alice lists her group ({groups})")


def lift():
    admin = AdminClient(config("admin"))
    deny = AclBindingFilter(ResourceType.TOPIC, "orders.secret", ResourcePatternType.LITERAL,
                            "User:alice", "*", AclOperation.READ, AclPermissionType.DENY)
    removed = next(iter(admin.delete_acls([deny]).values())).result(15)
    check(len(removed) == 1, f"the DENY is removed ({removed})")
    records, error = read("alice", "orders.secret", "alice-group")
    check(len(records) == 10 and error is None, f"alice reads orders.secret now ({error})")


def authenticates(user, password):
    errors = []
    admin = AdminClient({**config(user), "sasl.password": password,
                         "error_cb": errors.append})
    try:
        admin.list_topics(timeout=5)
        return True
    except KafkaException:
        return False


def users():
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion,
                                       UserScramCredentialUpsertion)
    admin = AdminClient(config("admin"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    made = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("carol", info, b"carol-pass")])
    made["carol"].result(15)
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(15)
    infos = [(i.mechanism, i.iterations) for i in described.scram_credential_infos]
    check(infos == [(ScramMechanism.SCRAM_SHA_512, 8192)], f"carol is described ({infos})")
    everyone = admin.describe_user_scram_credentials().result(15)
    check({"admin", "alice", "carol"} <= set(everyone), f"every user is described ({everyone})")
    check(authenticates("carol", "carol-pass"), "carol authenticates")
    check(not authenticates("carol", "wrong"), "carol with a wrong password does not")
    alice = AdminClient(config("alice"))
    futures = alice.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("alice", info, b"new")])
    code = code_of(futures["alice"])
    check(code == KafkaError.CLUSTER_AUTHORIZATION_FAILED, f"alice may not change users ({code})")
    gone = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)])
    gone["carol"].result(15)
    check(not authenticates("carol", "carol-pass"), "a deleted user is refused")


def kept():
    admin = AdminClient(config("admin"))
    described = admin.describe_acls(EVERY_ACL).result(15)
    check(sorted(map(str, described)) == sorted(map(str, [ALLOW_ORDERS, ALLOW_GROUP])),
          f"the ACLs survived the restart ({described})")


def make_carol():
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    admin = AdminClient(config("admin"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    made = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("carol", info, b"carol-pass")])
    made["carol"].result(15)


def survived():
    check(authenticates("carol", "carol-pass"), "carol authenticates")
    check(not authenticates("carol", "wrong"), "carol with a wrong password does not")
    admin = AdminClient(config("admin"))
    described = admin.describe_acls(EVERY_ACL).result(15)
    check(sorted(map(str, described)) == sorted(map(str, [ALLOW_ORDERS, ALLOW_GROUP, DENY_SECRET])),
          f"the three ACLs are described ({described})")
    _, error = read("alice", "orders.secret", "alice-group", timeout=15)
    check(error == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"DENY still beats ALLOW ({error})")


{"setup": setup, "alice": alice, "lift": lift, "users": users, "kept": kept,
 "make-carol": make_carol, "survived": survived}[phase]()
print("PASSED")
