//! DescribeClientQuotas and AlterClientQuotas (`security::quotas`), and what a request
//! costs against its client's quota: the throttle time a response carries, during which
//! the connection's next request is not read (as Kafka mutes a throttled channel).

use super::{encode, text, Answer};
use crate::security::gate::Gate;
use crate::security::quotas::{self, QuotaChange};
use crate::security::Session;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_auth::quota::QuotaEntity;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasResponse,
    DescribeClientQuotasResponse,
};
use keel_kafka::requests::{AlterQuotas, DescribeQuotas, QuotaMatch};
use std::rc::Rc;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";

pub use crate::security::quotas::charge;

fn entity_parts(entity: &QuotaEntity) -> Vec<(&'static str, Option<String>)> {
    let mut parts = Vec::new();
    if let Some(user) = &entity.user {
        parts.push((USER, user.clone()));
    }
    if let Some(client) = &entity.client_id {
        parts.push((CLIENT_ID, client.clone()));
    }
    parts
}

fn matches(entity: &QuotaEntity, filter: &DescribeQuotas) -> bool {
    let part = |t: &str| match t {
        USER => Some(&entity.user),
        CLIENT_ID => Some(&entity.client_id),
        _ => None,
    };
    let each = filter.components.iter().all(
        |QuotaMatch {
             entity_type,
             match_type,
             name,
         }| {
            match (part(entity_type), match_type) {
                (Some(Some(Some(n))), 0) => name.as_deref() == Some(n.as_str()),
                (Some(Some(None)), 1) => true,
                (Some(Some(_)), 2) => true,
                _ => false,
            }
        },
    );
    let named = |t: &str| filter.components.iter().any(|c| c.entity_type == t);
    let only_those =
        (entity.user.is_none() || named(USER)) && (entity.client_id.is_none() || named(CLIENT_ID));
    each && (!filter.strict || only_those)
}

pub fn describe(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    filter: DescribeQuotas,
) -> Answer {
    use describe_client_quotas_response::{EntityData, EntryData, ValueData};
    if !gate.cluster(Operation::DescribeConfigs) {
        let response = DescribeClientQuotasResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED);
        return encode(header, &response);
    }
    let entries = shard
        .security
        .quotas
        .entries()
        .into_iter()
        .filter(|(entity, _)| matches(entity, &filter))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity_parts(&entity)
                        .into_iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(text(t))
                                .with_entity_name(n.map(text))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(kind, value)| {
                            ValueData::default()
                                .with_key(text(kind.key()))
                                .with_value(value)
                        })
                        .collect(),
                )
        })
        .collect();
    encode(
        header,
        &DescribeClientQuotasResponse::default().with_entries(Some(entries)),
    )
}

pub async fn alter(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    session: &Session,
    request: AlterQuotas,
) -> Answer {
    use alter_client_quotas_response::{EntityData, EntryData};
    let allowed = gate.cluster(Operation::AlterConfigs);
    let mut results = Vec::new();
    for entry in request.entries {
        let answer = EntryData::default().with_entity(
            entry
                .entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(text(t.clone()))
                        .with_entity_name(n.clone().map(text))
                })
                .collect(),
        );
        let outcome = if allowed {
            changes(&entry.entity, &entry.ops)
        } else {
            Err((
                errors::CLUSTER_AUTHORIZATION_FAILED,
                "not authorized".to_owned(),
            ))
        };
        let outcome = match outcome {
            Ok(_) if request.validate_only => Ok(()),
            Ok(changes) => crate::security::changes::alter_quotas(shard, &changes)
                .await
                .map(|()| crate::security::changes::audit_quotas(session, &changes))
                .map_err(|e| (errors::UNKNOWN_SERVER_ERROR, format!("{e:#}"))),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(()) => answer,
            Err((code, message)) => answer
                .with_error_code(code)
                .with_error_message(Some(text(message))),
        });
    }
    encode(
        header,
        &AlterClientQuotasResponse::default().with_entries(results),
    )
}

/// One entity's operations as quota changes, or Kafka's error for them.
fn changes(
    entity: &[(String, Option<String>)],
    ops: &[(String, f64, bool)],
) -> Result<Vec<QuotaChange>, (i16, String)> {
    let invalid = |why: &str| (errors::INVALID_REQUEST, why.to_owned());
    let mut target = QuotaEntity::default();
    for (entity_type, name) in entity {
        let slot = match entity_type.as_str() {
            USER => &mut target.user,
            CLIENT_ID => &mut target.client_id,
            _ => return Err(invalid("entity types are user and client-id")),
        };
        if slot.replace(name.clone()).is_some() {
            return Err(invalid("an entity type named twice"));
        }
    }
    if target.user.is_none() && target.client_id.is_none() {
        return Err(invalid("an entity names a user or a client id"));
    }
    ops.iter()
        .map(|(key, value, remove)| {
            quotas::change(&target, key, (!remove).then_some(*value)).map_err(invalid)
        })
        .collect()
}
