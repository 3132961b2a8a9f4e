//! CreateAcls, DescribeAcls and DeleteAcls: the broker's ACLs (`security::acls`) through
//! Kafka's admin API. Describing needs DESCRIBE on the cluster, changing ALTER; without
//! an authorizer every one answers SECURITY_DISABLED, as Kafka.

use super::{encode, text, Answer};
use crate::security::{acls, changes, Session};
use crate::shard::Shard;
use keel_auth::acl::{AclBinding, AclFilter, Operation};
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::create_acls_response::AclCreationResult;
use keel_kafka::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use keel_kafka::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use keel_kafka::kafka_protocol::messages::{
    CreateAclsResponse, DeleteAclsResponse, DescribeAclsResponse,
};
use keel_kafka::requests::{AclCreation, AclFilterCodes};
use std::rc::Rc;

/// The error for the whole request, if it cannot be served to this connection.
fn refused(shard: &Shard, session: &Session, operation: Operation) -> Option<i16> {
    let acls = &shard.security.acls;
    if !acls.enabled() {
        return Some(errors::SECURITY_DISABLED);
    }
    let allowed = crate::security::gate::Gate::new(shard, session).cluster(operation);
    if !allowed {
        tracing::info!(target: "keel::audit", peer = %session.peer, principal = ?session.principal(), operation = operation.name(), "ACL request refused");
    }
    (!allowed).then_some(errors::CLUSTER_AUTHORIZATION_FAILED)
}

pub async fn create_acls(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Session,
    creations: Vec<AclCreation>,
) -> Answer {
    let answer = |results: Vec<AclCreationResult>| {
        encode(header, &CreateAclsResponse::default().with_results(results))
    };
    if let Some(code) = refused(shard, session, Operation::Alter) {
        let result = AclCreationResult::default().with_error_code(code);
        return answer(vec![result; creations.len()]);
    }
    let checked: Vec<Result<AclBinding, String>> =
        creations.into_iter().map(acls::binding).collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let stored = crate::security::changes::create_acls(shard, valid.clone()).await;
    changes::audit_acls(session, "create", &valid, stored.as_ref().err());
    let results = checked
        .into_iter()
        .map(|c| match (c, &stored) {
            (Ok(_), Ok(())) => AclCreationResult::default(),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(errors::UNKNOWN_SERVER_ERROR)
                .with_error_message(Some(text(format!("{e:#}")))),
            (Err(why), _) => AclCreationResult::default()
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(text(why))),
        })
        .collect();
    answer(results)
}

pub fn describe_acls(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Session,
    filter: AclFilterCodes,
) -> Answer {
    if let Some(code) = refused(shard, session, Operation::Describe) {
        return encode(
            header,
            &DescribeAclsResponse::default().with_error_code(code),
        );
    }
    let filter = match acls::filter(filter) {
        Ok(filter) => filter,
        Err(why) => {
            let response = DescribeAclsResponse::default()
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(text(why)));
            return encode(header, &response);
        }
    };
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in shard.security.acls.describe(&filter) {
        let acl = AclDescription::default()
            .with_principal(text(b.principal))
            .with_host(text(b.host))
            .with_operation(b.operation as i8)
            .with_permission_type(b.permission as i8);
        let same = |r: &DescribeAclsResource| {
            r.resource_type == b.resource_type as i8
                && r.resource_name.as_str() == b.name
                && r.pattern_type == b.pattern as i8
        };
        match resources.iter_mut().find(|r| same(r)) {
            Some(resource) => resource.acls.push(acl),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type as i8)
                    .with_resource_name(text(b.name))
                    .with_pattern_type(b.pattern as i8)
                    .with_acls(vec![acl]),
            ),
        }
    }
    encode(
        header,
        &DescribeAclsResponse::default().with_resources(resources),
    )
}

pub async fn delete_acls(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Session,
    filters: Vec<AclFilterCodes>,
) -> Answer {
    let answer = |results: Vec<DeleteAclsFilterResult>| {
        encode(
            header,
            &DeleteAclsResponse::default().with_filter_results(results),
        )
    };
    if let Some(code) = refused(shard, session, Operation::Alter) {
        let result = DeleteAclsFilterResult::default().with_error_code(code);
        return answer(vec![result; filters.len()]);
    }
    let checked: Vec<Result<AclFilter, String>> = filters.into_iter().map(acls::filter).collect();
    let valid: Vec<AclFilter> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let removed = match crate::security::changes::delete_acls(shard, &valid).await {
        Ok(removed) => removed,
        Err(e) => {
            let result = DeleteAclsFilterResult::default()
                .with_error_code(errors::UNKNOWN_SERVER_ERROR)
                .with_error_message(Some(text(format!("{e:#}"))));
            return answer(vec![result; checked.len()]);
        }
    };
    changes::audit_acls(session, "delete", &removed.concat(), None);
    let mut removed = removed.into_iter();
    let results = checked
        .into_iter()
        .map(|c| match c {
            Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                removed
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(matching)
                    .collect(),
            ),
            Err(why) => DeleteAclsFilterResult::default()
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(text(why))),
        })
        .collect();
    answer(results)
}

fn matching(b: AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type as i8)
        .with_resource_name(text(b.name))
        .with_pattern_type(b.pattern as i8)
        .with_principal(text(b.principal))
        .with_host(text(b.host))
        .with_operation(b.operation as i8)
        .with_permission_type(b.permission as i8)
}
