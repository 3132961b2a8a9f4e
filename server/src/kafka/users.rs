//! DescribeUserScramCredentials and AlterUserScramCredentials: the users SASL/SCRAM
//! authenticates (`security::users`) through Kafka's admin API. The client salts the
//! password; the broker keeps the stored and server keys made from it. Describing needs
//! DESCRIBE on the cluster, changing ALTER.

use super::{encode, text, Answer};
use crate::security::gate::Gate;
use crate::security::Session;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_auth::{Mechanism, ScramCredential};
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use keel_kafka::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use keel_kafka::kafka_protocol::messages::{
    AlterUserScramCredentialsResponse, DescribeUserScramCredentialsResponse,
};
use keel_kafka::requests::AlterScram;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Kafka's code of a SCRAM mechanism, and back.
fn mechanism_code(mechanism: Mechanism) -> i8 {
    match mechanism {
        Mechanism::ScramSha256 => 1,
        Mechanism::ScramSha512 => 2,
        Mechanism::Plain => 0,
    }
}

fn mechanism_of(code: i8) -> Option<Mechanism> {
    match code {
        1 => Some(Mechanism::ScramSha256),
        2 => Some(Mechanism::ScramSha512),
        _ => None,
    }
}

pub fn describe(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    users: Option<Vec<String>>,
) -> Answer {
    // Null or empty: every user (Kafka's rule).
    let users = users.filter(|u| !u.is_empty());
    if !gate.cluster(Operation::Describe) {
        // As Kafka's: the error for the whole request and for each user named (with a
        // message: librdkafka fails on a refusal without one).
        let refused = || {
            DescribeUserScramCredentialsResult::default()
                .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(Some(text("Cluster authorization failed.")))
        };
        let results = users
            .unwrap_or_default()
            .iter()
            .map(|user| refused().with_user(text(user)))
            .collect();
        let response = DescribeUserScramCredentialsResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(text("Cluster authorization failed.")))
            .with_results(results);
        return encode(header, &response);
    }
    let known: BTreeMap<String, Vec<(Mechanism, u32)>> =
        shard.security.users.list().into_iter().collect();
    let asked = users.unwrap_or_else(|| known.keys().cloned().collect());
    let results = asked
        .into_iter()
        .map(|user| {
            let result = DescribeUserScramCredentialsResult::default().with_user(text(&user));
            match known.get(&user) {
                Some(credentials) => result.with_credential_infos(
                    credentials
                        .iter()
                        .map(|(m, iterations)| {
                            CredentialInfo::default()
                                .with_mechanism(mechanism_code(*m))
                                .with_iterations(*iterations as i32)
                        })
                        .collect(),
                ),
                None => result
                    .with_error_code(errors::RESOURCE_NOT_FOUND)
                    .with_error_message(Some(text("no SCRAM credential for this user"))),
            }
        })
        .collect();
    encode(
        header,
        &DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}

pub async fn alter(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    session: &Session,
    request: AlterScram,
) -> Answer {
    let allowed = gate.cluster(Operation::Alter);
    let mut names: Vec<&str> = request.deletions.iter().map(|(n, _)| n.as_str()).collect();
    names.extend(request.upsertions.iter().map(|u| u.name.as_str()));
    let twice = |name: &str| names.iter().filter(|n| **n == name).count() > 1;
    let mut results = Vec::new();
    let mut answer = |user: &str, outcome: Result<(), (i16, String)>| {
        let result = AlterUserScramCredentialsResult::default().with_user(text(user));
        results.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => result
                .with_error_code(code)
                .with_error_message(Some(text(message))),
        });
    };
    let set = crate::security::changes::set_user;
    for (user, code) in &request.deletions {
        let outcome = match check(allowed, twice(user), *code) {
            Err(e) => Err(e),
            Ok(mechanism) => match set(shard, user, mechanism, None).await {
                Ok(true) => {
                    crate::security::changes::audit_user(session, "delete", user, mechanism);
                    Ok(())
                }
                Ok(false) => Err((errors::RESOURCE_NOT_FOUND, "no such credential".into())),
                Err(e) => Err((errors::UNKNOWN_SERVER_ERROR, format!("{e:#}"))),
            },
        };
        answer(user, outcome);
    }
    for u in &request.upsertions {
        let credential = check(allowed, twice(&u.name), u.mechanism).and_then(|mechanism| {
            let hash = mechanism.scram().expect("SCRAM mechanisms only");
            let iterations = u32::try_from(u.iterations).unwrap_or(0);
            ScramCredential::from_salted_password(hash, &u.salt, iterations, &u.salted_password)
                .map(|credential| (mechanism, credential))
                .map_err(|e| (errors::UNACCEPTABLE_CREDENTIAL, e.to_string()))
        });
        let outcome = match credential {
            Err(e) => Err(e),
            Ok((mechanism, credential)) => set(shard, &u.name, mechanism, Some(credential))
                .await
                .map(|_| crate::security::changes::audit_user(session, "set", &u.name, mechanism))
                .map_err(|e| (errors::UNKNOWN_SERVER_ERROR, format!("{e:#}"))),
        };
        answer(&u.name, outcome);
    }
    encode(
        header,
        &AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

/// The mechanism of one change, or why it is refused (Kafka's codes).
fn check(allowed: bool, twice: bool, code: i8) -> Result<Mechanism, (i16, String)> {
    if !allowed {
        return Err((
            errors::CLUSTER_AUTHORIZATION_FAILED,
            "not authorized".into(),
        ));
    }
    if twice {
        let why = "a user may appear once in one request";
        return Err((errors::DUPLICATE_RESOURCE, why.into()));
    }
    mechanism_of(code).ok_or((
        errors::UNSUPPORTED_SASL_MECHANISM,
        "SCRAM-SHA-256 (1) or SCRAM-SHA-512 (2)".into(),
    ))
}
