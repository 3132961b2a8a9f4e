//! DeleteRecords: the log start of each partition moved up (segment granularity); the
//! offsets topic is refused; DELETE on the topic with the authorizer on.

use super::{code, encode, text, Answer};
use crate::handlers::groups::OFFSETS_TOPIC;
use crate::security::gate::Gate;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    DeleteRecordsResponse, TopicName,
};
use keel_kafka::requests::DeleteRecords;
use keel_protocol::api::ErrorCode;
use std::rc::Rc;

pub async fn delete_records(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: DeleteRecords,
) -> Answer {
    let mut topics = Vec::with_capacity(request.topics.len());
    for (topic, partitions) in request.topics {
        let mut results = Vec::with_capacity(partitions.len());
        let deletable = gate.topic(Operation::Delete, &topic);
        for (partition, offset) in partitions {
            let outcome = match u32::try_from(partition) {
                _ if !deletable => Err(ErrorCode::TopicAuthorizationFailed),
                Ok(p) if topic != OFFSETS_TOPIC => {
                    crate::handlers::admin::delete_records(shard, &topic, p, offset).await
                }
                Ok(_) => Err(ErrorCode::InvalidTopic),
                Err(_) => Err(ErrorCode::UnknownTopicOrPartition),
            };
            let (low_watermark, error) = match outcome {
                Ok(low) => (low, 0),
                Err(error) => (-1, code(error)),
            };
            results.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(partition)
                    .with_low_watermark(low_watermark)
                    .with_error_code(error),
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(results),
        );
    }
    encode(
        header,
        &DeleteRecordsResponse::default().with_topics(topics),
    )
}
