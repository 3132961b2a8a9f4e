//! Tests of the metadata image: applying records, bounds, encoding.

use super::*;

fn create(name: &str, partitions: u32) -> Record {
    Record::CreateTopic {
        name: name.into(),
        configs: vec![],
        partitions: (0..partitions)
            .map(|_| PartitionState {
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            })
            .collect(),
    }
}

// An entry is applied whole or not at all; a refused entry still moves the offset.
#[test]
fn entries_apply_atomically() {
    let mut image = MetadataImage::default();
    image.apply(1, &[create("a", 2)]).unwrap();
    let before = image.clone();
    let err = image
        .apply(2, &[create("b", 1), create("a", 1)])
        .unwrap_err();
    assert_eq!(err, Error::TopicExists("a".into()));
    assert_eq!(image.topics(), before.topics(), "b must not half-apply");
    assert_eq!(image.offset(), 2);
}

// Topic ids are never reused, even after a delete and re-create of the same name.
#[test]
fn topic_ids_are_stable_and_unique() {
    let mut image = MetadataImage::default();
    image.apply(1, &[create("a", 1)]).unwrap();
    let first = image.topic("a").unwrap().id;
    image
        .apply(
            2,
            &[Record::DeleteTopic {
                name: "a".into(),
                topic_id: first,
            }],
        )
        .unwrap();
    image.apply(3, &[create("a", 1)]).unwrap();
    assert_ne!(image.topic("a").unwrap().id, first);
    // A delete naming the old id does not remove the new topic.
    assert!(image
        .apply(
            4,
            &[Record::DeleteTopic {
                name: "a".into(),
                topic_id: first
            }]
        )
        .is_err());
    assert!(image.topic("a").is_some());
}

// A leader change without an epoch bump is refused.
#[test]
fn leader_change_needs_a_new_epoch() {
    let mut image = MetadataImage::default();
    image.apply(1, &[create("a", 1)]).unwrap();
    let id = image.topic("a").unwrap().id;
    let change = |leader, leader_epoch, partition_epoch| Record::PartitionChange {
        topic_id: id,
        partition: 0,
        state: PartitionState {
            replicas: vec![1],
            isr: vec![1],
            leader,
            leader_epoch,
            partition_epoch,
            adding: vec![],
            removing: vec![],
        },
    };
    assert!(image.apply(2, &[change(-1, 0, 1)]).is_err());
    image.apply(3, &[change(-1, 1, 1)]).unwrap();
    assert!(
        image.apply(4, &[change(-1, 0, 2)]).is_err(),
        "epochs never go back"
    );
    // A change computed from an older state of the partition is refused.
    assert!(
        image.apply(5, &[change(1, 2, 1)]).is_err(),
        "partition epoch"
    );
    assert!(
        image.apply(6, &[change(1, 2, 3)]).is_err(),
        "partition epoch"
    );
    image.apply(7, &[change(1, 2, 2)]).unwrap();
    assert_eq!(image.topic("a").unwrap().partitions[0].leader, 1);
}

// A snapshot of the image decodes to the same image.
#[test]
fn snapshot_round_trip() {
    let mut image = MetadataImage::default();
    image
        .apply(
            1,
            &[
                Record::RegisterBroker {
                    id: 1,
                    address: "h:1".into(),
                    incarnation: 4,
                },
                create("a", 3),
            ],
        )
        .unwrap();
    image
        .apply(
            2,
            &[Record::SetTopicConfigs {
                name: "a".into(),
                configs: vec![("fsync".into(), "never".into())],
            }],
        )
        .unwrap();
    for (offset, broker) in [(3, 1), (4, 2)] {
        let block = Record::AllocateProducerIds { broker, count: 10 };
        image.apply(offset, &[block]).unwrap();
    }
    let id = Record::SetClusterId { id: "abc".into() };
    image.apply(5, &[id]).unwrap();
    let data = image.encode().unwrap();
    assert_eq!(MetadataImage::decode(&data).unwrap(), image);
    // An image from before producer ids ends where they begin (8 + 4 + 16 per block,
    // then the cluster id: 2 + 3), one from before reassignments where they begin (two
    // empty lists, 8 bytes, per partition), one from before partition epochs where they
    // begin (4 bytes each).
    let partitions = image.topic("a").unwrap().partitions.len();
    // An image from before security metadata ends before its count (4 bytes).
    let without_security = data.len() - 4;
    let without_producer_ids = without_security - (8 + 4 + 2 * 16 + 2 + 3);
    let with_epochs = without_producer_ids - 8 * partitions;
    let legacy = with_epochs - 4 * partitions;
    for len in 0..data.len() {
        let ok = MetadataImage::decode(&data[..len]).is_ok();
        let older = [legacy, with_epochs, without_producer_ids, without_security].contains(&len);
        assert_eq!(ok, older, "{len}");
    }
}

// Goal: no two brokers, and no two starts of one broker, hand out the same producer
// id: each block starts where the last one (to whichever broker) ended.
#[test]
fn producer_id_blocks_are_disjoint() {
    let mut image = MetadataImage::default();
    let mut given = Vec::new();
    for (offset, broker) in [(1, 1), (2, 2), (3, 1), (4, 3)] {
        let block = Record::AllocateProducerIds { broker, count: 5 };
        image.apply(offset, &[block]).unwrap();
        given.push(image.producer_block(broker).unwrap());
    }
    assert_eq!(given, vec![(0, 5), (5, 5), (10, 5), (15, 5)]);
    let empty = Record::AllocateProducerIds {
        broker: 1,
        count: 0,
    };
    assert!(image.apply(5, &[empty]).is_err());
    assert_eq!(
        image.producer_block(1),
        Some((10, 5)),
        "a refused block changes nothing"
    );
}

// Goal: a cluster's id, once set, never changes: a second leader's proposal of another
// id (two quorums' ids racing) is refused, the same id again is harmless.
#[test]
fn the_cluster_id_is_set_once() {
    let mut image = MetadataImage::default();
    let set = |id: &str| Record::SetClusterId { id: id.into() };
    assert!(image.apply(1, &[set("")]).is_err(), "empty");
    assert!(image.apply(2, &[set("a b")]).is_err(), "not printable");
    image.apply(3, &[set("first")]).unwrap();
    image.apply(4, &[set("first")]).unwrap();
    assert!(image.apply(5, &[set("second")]).is_err());
    assert_eq!(image.cluster_id(), Some("first"));
}

// Goal: users, ACLs and quotas live in the metadata: entries set and removed apply in
// order, survive a snapshot, and stay within their bounds (a refused change changes
// nothing).
#[test]
fn security_entries_apply_and_survive_a_snapshot() {
    use crate::records::SecurityEntry;
    let entry = |kind, key: &str, value: Option<&str>| SecurityEntry {
        kind,
        key: key.into(),
        value: value.map(Into::into),
    };
    let mut image = MetadataImage::default();
    let set = |entries| Record::SetSecurity { entries };
    image
        .apply(
            1,
            &[set(vec![
                entry(1, "alice", Some("c1")),
                entry(2, "acl", Some("")),
            ])],
        )
        .unwrap();
    image
        .apply(
            2,
            &[set(vec![
                entry(1, "alice", None),
                entry(1, "bob", Some("c2")),
            ])],
        )
        .unwrap();
    let keys: Vec<_> = image.security().keys().cloned().collect();
    assert_eq!(keys, vec![(1, "bob".to_owned()), (2, "acl".to_owned())]);
    let data = image.encode().unwrap();
    assert_eq!(MetadataImage::decode(&data).unwrap(), image);
    let long = "x".repeat(SECURITY_TEXT_BYTES_MAX + 1);
    for (offset, bad) in (3..).zip([
        vec![],
        vec![entry(0, "k", Some("v"))],
        vec![entry(SECURITY_KIND_MAX + 1, "k", Some("v"))],
        vec![entry(1, "", Some("v"))],
        vec![entry(1, &long, Some("v"))],
        vec![entry(1, "k", Some(&long))],
        vec![entry(
            LINK_KIND,
            "k",
            Some(&"x".repeat(LINK_TEXT_BYTES_MAX + 1)),
        )],
    ]) {
        assert!(image.apply(offset, &[set(bad.clone())]).is_err(), "{bad:?}");
    }
    assert_eq!(image.security().len(), 2, "refused changes change nothing");
    // A link's definition may be longer than a user's entry.
    image
        .apply(20, &[set(vec![entry(LINK_KIND, "east", Some(&long))])])
        .unwrap();
}

// Kafka's topic name rules.
#[test]
fn topic_names() {
    assert!(check_topic_name("orders.v1_x-2").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
        assert!(check_topic_name(bad).is_err(), "{bad:?}");
    }
}
