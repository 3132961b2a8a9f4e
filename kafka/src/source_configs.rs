//! Reading a source cluster's topic configs over the Kafka protocol, as a cluster link
//! syncs them (issue 23): DescribeConfigs v1 (every Kafka 2.x–4.x broker serves it; not
//! flexible), its answer decoded with the bounded [`Reader`] (the source is a peer).

use crate::read::{Reader, Result};
use bytes::{BufMut, Bytes, BytesMut};

const DESCRIBE_CONFIGS: i16 = 32;
/// Kafka's resource type of a topic.
const TOPIC: i8 = 2;
/// Kafka's config source of a value set on the topic itself.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// DescribeConfigs v1 of every config of each of `topics`, without synonyms.
pub fn describe_configs_request(
    correlation_id: i32,
    client_id: &str,
    topics: &[String],
) -> BytesMut {
    crate::source::request_frame(
        (DESCRIBE_CONFIGS, 1),
        correlation_id,
        client_id,
        false,
        |out| {
            out.put_i32(topics.len() as i32);
            for topic in topics {
                out.put_i8(TOPIC);
                let name = &topic.as_bytes()[..topic.len().min(i16::MAX as usize)];
                out.put_i16(name.len() as i16);
                out.put_slice(name);
                out.put_i32(-1); // configuration keys: null, every one
            }
            out.put_u8(0); // include synonyms: no
        },
    )
}

/// One config of a topic as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Its name.
    pub name: String,
    /// Its value (`None` for a sensitive or unset one).
    pub value: Option<String>,
    /// Where the value comes from ([`DYNAMIC_TOPIC_CONFIG`]: set on the topic).
    pub source: i8,
    /// Whether the source hides its value.
    pub sensitive: bool,
}

/// One topic's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigs {
    /// The topic.
    pub topic: String,
    /// Its error (0: none).
    pub error: i16,
    /// Its configs.
    pub configs: Vec<SourceConfig>,
}

/// A DescribeConfigs v1 answer (after the size prefix): the correlation id and each
/// topic's configs.
///
/// # Errors
/// A malformed or truncated body.
pub fn describe_configs_response(body: Bytes) -> Result<(i32, Vec<TopicConfigs>)> {
    let mut r = Reader::new(body, false);
    let correlation_id = r.i32("correlation id")?;
    let _throttle = r.i32("throttle time")?;
    let results = r.array("results", |r| {
        let error = r.i16("error code")?;
        let _message = r.nullable_string("error message")?;
        let _kind = r.i8("resource type")?;
        let topic = r.string("resource name")?;
        let configs = r.array("configs", |r| {
            let name = r.string("config name")?;
            let value = r.nullable_string("config value")?;
            let _read_only = r.bool("read only")?;
            let source = r.i8("config source")?;
            let sensitive = r.bool("is sensitive")?;
            let _synonyms = r.array("synonyms", |r| {
                r.string("synonym name")?;
                r.nullable_string("synonym value")?;
                r.i8("synonym source")
            })?;
            Ok(SourceConfig {
                name,
                value,
                source,
                sensitive,
            })
        })?;
        Ok(TopicConfigs {
            topic,
            error,
            configs,
        })
    })?;
    Ok((correlation_id, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_string(out: &mut BytesMut, value: &str) {
        out.put_i16(value.len() as i16);
        out.put_slice(value.as_bytes());
    }

    #[test]
    fn an_answer_decodes_and_a_truncated_one_is_refused() {
        let mut body = BytesMut::new();
        body.put_i32(7);
        body.put_i32(0);
        body.put_i32(1);
        body.put_i16(0);
        body.put_i16(-1);
        body.put_i8(TOPIC);
        put_string(&mut body, "orders");
        body.put_i32(2);
        put_string(&mut body, "retention.ms");
        put_string(&mut body, "86400000");
        body.put_u8(0);
        body.put_i8(DYNAMIC_TOPIC_CONFIG);
        body.put_u8(0);
        body.put_i32(0);
        put_string(&mut body, "segment.bytes");
        put_string(&mut body, "1073741824");
        body.put_u8(0);
        body.put_i8(5);
        body.put_u8(0);
        body.put_i32(0);
        let body = body.freeze();
        let (correlation, topics) = describe_configs_response(body.clone()).unwrap();
        assert_eq!(correlation, 7);
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].topic, "orders");
        assert_eq!(
            topics[0].configs[0],
            SourceConfig {
                name: "retention.ms".into(),
                value: Some("86400000".into()),
                source: DYNAMIC_TOPIC_CONFIG,
                sensitive: false,
            }
        );
        assert_eq!(topics[0].configs[1].source, 5);
        for cut in [1, 5, 20] {
            assert!(describe_configs_response(body.slice(..body.len() - cut)).is_err());
        }
        let request = describe_configs_request(3, "keel-link", &["orders".into()]);
        // Size, header v1 (key, version, correlation, client id), one topic resource.
        assert_eq!(&request[4..8], &[0, 32, 0, 1]);
        assert!(request.ends_with(&[0xff, 0xff, 0xff, 0xff, 0]));
    }
}
