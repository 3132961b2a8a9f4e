//! keel-client's batch API: a prepared record set goes as one batch, after the records of
//! its partition accepted before it, with idempotent sequences that count its records.

use bytes::Bytes;
use keel_client::{Error, Producer, ProducerRecord, RecordSet};
use keel_tests::in_process::InProcess;
use std::time::Duration;

#[test]
fn record_sets_keep_order_offsets_and_sequences_with_single_records_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    let mut admin = broker.client();
    admin.create_topic("sets", 2);
    let addr = broker.addr.to_string();
    keel_tests::cluster::runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .linger(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        // Records still open in the partition's batch go before the set.
        let mut singles = Vec::new();
        for i in 0..3 {
            let record = ProducerRecord::new("sets", format!("single-{i}")).partition(1);
            singles.push(producer.enqueue(record).await.unwrap());
        }
        let mut set = RecordSet::default();
        for i in 0..100 {
            set.push(Some(Bytes::from(format!("k{i}"))), format!("set-{i}"));
        }
        assert_eq!(set.len(), 100);
        let first_set = producer.enqueue_records("sets", 1, set).await.unwrap();
        let mut second = RecordSet::default();
        second.push(None, "set2-0").push(None, "set2-1");
        let second_set = producer.enqueue_records("sets", 1, second).await.unwrap();
        // After the sets, single records again: their sequences must follow the sets'
        // records, or the broker refuses them (OUT_OF_ORDER_SEQUENCE_NUMBER).
        let after = producer
            .send(ProducerRecord::new("sets", "after").partition(1))
            .await
            .unwrap();
        let mut offsets = Vec::new();
        for single in singles {
            offsets.push(single.await.unwrap().offset);
        }
        assert_eq!(offsets, vec![0, 1, 2]);
        let first_set = first_set.await.unwrap();
        assert_eq!((first_set.partition, first_set.offset), (1, 3));
        assert_eq!(second_set.await.unwrap().offset, 103);
        assert_eq!(after.offset, 105);
        assert!(matches!(
            producer
                .enqueue_records("sets", 1, RecordSet::default())
                .await,
            Err(Error::InvalidRecord(_))
        ));
        assert!(matches!(
            producer
                .enqueue_records("sets", 2, RecordSet::default())
                .await,
            Err(Error::InvalidRecord(_))
        ));
        producer.close().await;
    });
    let stored = admin.read_partition("sets", 1);
    let values: Vec<&str> = stored.iter().map(|r| r.2.as_str()).collect();
    let mut want = vec!["single-0".to_owned(), "single-1".into(), "single-2".into()];
    want.extend((0..100).map(|i| format!("set-{i}")));
    want.extend(["set2-0".into(), "set2-1".into(), "after".into()]);
    assert_eq!(values, want);
    assert!(stored.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert!(admin.read_partition("sets", 0).is_empty());
}
