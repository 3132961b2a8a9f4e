//! The native listener's security APIs: SASL (the same exchange as the Kafka listener's,
//! `security::authenticate`) and the admin APIs for SCRAM users, ACLs and client quotas,
//! changed through `security::changes` as the Kafka admin APIs are (the metadata log in a
//! cluster, files on a single node). Who may call each is decided in `native_acls.rs`.

use crate::handlers::Outgoing;
use crate::security::authenticate::{self, Outcome};
use crate::security::sasl::HandshakeError;
use crate::security::{acls, changes, quotas, Session};
use crate::shard::Shard;
use bytes::Bytes;
use keel_auth::quota::QuotaEntity;
use keel_auth::{Mechanism, ScramCredential};
use keel_protocol::api::{
    DeleteAclsResult, ErrorCode, QuotaEntry, QuotaName, Request, Response, ScramUpsertion,
    SecurityRequest, SecurityResponse, TopicResult, UserDescription,
};
use std::rc::Rc;

/// On a SASL listener, the error for a request the connection may not make yet: anything
/// but ApiVersions and the exchange itself before it authenticated, or after its session
/// ended (KIP-368) until it authenticates again.
pub fn unauthenticated(session: &Session, request: &Request) -> Option<ErrorCode> {
    session.sasl.as_ref()?;
    let exchange = matches!(
        request,
        Request::ApiVersions
            | Request::Security(
                SecurityRequest::SaslHandshake { .. } | SecurityRequest::SaslAuthenticate { .. }
            )
    );
    if exchange {
        return None;
    }
    if session.expired() {
        tracing::info!(target: "keel::audit", peer = %session.peer, "SASL session expired without re-authentication");
        return Some(ErrorCode::SaslAuthenticationFailed);
    }
    (!session.authenticated()).then_some(ErrorCode::SaslAuthenticationFailed)
}

/// Serves one security request of the connection `session`.
pub async fn handle(shard: &Rc<Shard>, session: &Session, request: SecurityRequest) -> Outgoing {
    let response = match request {
        SecurityRequest::SaslHandshake { mechanism } => handshake(session, &mechanism),
        SecurityRequest::SaslAuthenticate { auth_bytes } => {
            sasl_authenticate(shard, session, &auth_bytes).await
        }
        SecurityRequest::DescribeUsers { users } => describe_users(shard, users),
        SecurityRequest::AlterUsers {
            upsertions,
            deletions,
        } => alter_users(shard, session, upsertions, deletions).await,
        SecurityRequest::DescribeAcls { filter } => describe_acls(shard, filter),
        SecurityRequest::CreateAcls { acls } => create_acls(shard, session, acls).await,
        SecurityRequest::DeleteAcls { filters } => delete_acls(shard, session, filters).await,
        SecurityRequest::DescribeQuotas => describe_quotas(shard),
        SecurityRequest::AlterQuotas { changes } => alter_quotas(shard, session, changes).await,
    };
    Outgoing::body(&Response::Security(response))
}

fn handshake(session: &Session, mechanism: &str) -> SecurityResponse {
    let Some((chosen, offered)) = authenticate::handshake(session, mechanism) else {
        return SecurityResponse::SaslHandshake {
            error: ErrorCode::IllegalSaslState,
            mechanisms: Vec::new(),
        };
    };
    let error = match chosen {
        Ok(()) => ErrorCode::None,
        Err(HandshakeError::Unsupported) => ErrorCode::UnsupportedSaslMechanism,
        Err(HandshakeError::IllegalState) => ErrorCode::IllegalSaslState,
    };
    SecurityResponse::SaslHandshake {
        error,
        mechanisms: offered.into_iter().map(str::to_owned).collect(),
    }
}

/// A refused exchange is answered after Kafka's pause; the connection's exchange is over
/// (every later request is refused), so the client must connect again to retry.
async fn sasl_authenticate(
    shard: &Rc<Shard>,
    session: &Session,
    message: &[u8],
) -> SecurityResponse {
    let answer = |error, message: &str, auth_bytes: Vec<u8>, session_lifetime_ms| {
        SecurityResponse::SaslAuthenticate {
            error,
            message: message.to_owned(),
            auth_bytes: Bytes::from(auth_bytes),
            session_lifetime_ms,
        }
    };
    match authenticate::authenticate(shard, session, message) {
        Outcome::Challenge(challenge) => answer(ErrorCode::None, "", challenge, 0),
        Outcome::Done {
            response,
            lifetime_ms,
        } => answer(ErrorCode::None, "", response, lifetime_ms),
        Outcome::IllegalState(why) => answer(ErrorCode::IllegalSaslState, why, Vec::new(), 0),
        Outcome::Refused(why) => {
            glommio::timer::sleep(authenticate::failure_pause(shard)).await;
            answer(ErrorCode::SaslAuthenticationFailed, &why, Vec::new(), 0)
        }
    }
}

fn result(name: String, outcome: Result<(), (ErrorCode, String)>) -> TopicResult {
    let (error, message) = outcome.err().unwrap_or((ErrorCode::None, String::new()));
    TopicResult {
        topic: name,
        error,
        message,
    }
}

fn describe_users(shard: &Shard, names: Vec<String>) -> SecurityResponse {
    let known = shard.security.users.list();
    let describe = |(user, credentials): (String, Vec<(Mechanism, u32)>)| UserDescription {
        user,
        error: ErrorCode::None,
        credentials: credentials
            .into_iter()
            .map(|(m, iterations)| (m.name().to_owned(), iterations))
            .collect(),
    };
    let users = if names.is_empty() {
        known.into_iter().map(describe).collect()
    } else {
        names
            .into_iter()
            .map(|name| match known.iter().find(|(user, _)| *user == name) {
                Some(found) => describe(found.clone()),
                None => UserDescription {
                    user: name,
                    error: ErrorCode::ResourceNotFound,
                    credentials: Vec::new(),
                },
            })
            .collect()
    };
    SecurityResponse::DescribeUsers {
        error: ErrorCode::None,
        users,
    }
}

/// The SCRAM mechanism `name` names, with its hash.
fn scram(name: &str) -> Result<(Mechanism, keel_auth::scram::Hash), (ErrorCode, String)> {
    Mechanism::parse(name)
        .and_then(|m| Some((m, m.scram()?)))
        .ok_or_else(|| {
            let why = "SCRAM-SHA-256 or SCRAM-SHA-512".to_owned();
            (ErrorCode::UnsupportedSaslMechanism, why)
        })
}

async fn alter_users(
    shard: &Rc<Shard>,
    session: &Session,
    upsertions: Vec<ScramUpsertion>,
    deletions: Vec<(String, String)>,
) -> SecurityResponse {
    let mut names: Vec<&str> = deletions.iter().map(|(n, _)| n.as_str()).collect();
    names.extend(upsertions.iter().map(|u| u.user.as_str()));
    let twice = |name: &str| names.iter().filter(|n| **n == name).count() > 1;
    let once = |name: &str| match twice(name) {
        true => Err((
            ErrorCode::DuplicateResource,
            "a user may appear once in one request".to_owned(),
        )),
        false => Ok(()),
    };
    let failed = |e: anyhow::Error| (ErrorCode::Unknown, format!("{e:#}"));
    let mut results = Vec::new();
    for (user, mechanism) in &deletions {
        let outcome = match once(user).and_then(|()| scram(mechanism)) {
            Err(e) => Err(e),
            Ok((mechanism, _)) => match changes::set_user(shard, user, mechanism, None).await {
                Ok(true) => {
                    changes::audit_user(session, "delete", user, mechanism);
                    Ok(())
                }
                Ok(false) => Err((ErrorCode::ResourceNotFound, "no such credential".into())),
                Err(e) => Err(failed(e)),
            },
        };
        results.push(result(user.clone(), outcome));
    }
    for u in &upsertions {
        let credential =
            once(&u.user)
                .and_then(|()| scram(&u.mechanism))
                .and_then(|(mechanism, hash)| {
                    ScramCredential::from_salted_password(
                        hash,
                        &u.salt,
                        u.iterations,
                        &u.salted_password,
                    )
                    .map(|credential| (mechanism, credential))
                    .map_err(|e| (ErrorCode::UnacceptableCredential, e.to_string()))
                });
        let outcome = match credential {
            _ if u.user.is_empty() => {
                Err((ErrorCode::InvalidRequest, "a user name is needed".into()))
            }
            Err(e) => Err(e),
            Ok((mechanism, credential)) => {
                changes::set_user(shard, &u.user, mechanism, Some(credential))
                    .await
                    .map(|_| changes::audit_user(session, "set", &u.user, mechanism))
                    .map_err(failed)
            }
        };
        results.push(result(u.user.clone(), outcome));
    }
    SecurityResponse::AlterUsers { results }
}

fn describe_acls(shard: &Shard, filter: keel_protocol::api::AclFilter) -> SecurityResponse {
    let answer = |error, message: String, acls| SecurityResponse::DescribeAcls {
        error,
        message,
        acls,
    };
    if !shard.security.acls.enabled() {
        return answer(ErrorCode::SecurityDisabled, String::new(), Vec::new());
    }
    match acls::filter(filter) {
        Ok(filter) => {
            let bindings = shard.security.acls.describe(&filter);
            answer(
                ErrorCode::None,
                String::new(),
                bindings.into_iter().map(acls::codes).collect(),
            )
        }
        Err(why) => answer(ErrorCode::InvalidRequest, why, Vec::new()),
    }
}

async fn create_acls(
    shard: &Rc<Shard>,
    session: &Session,
    wanted: Vec<keel_protocol::api::Acl>,
) -> SecurityResponse {
    let names: Vec<String> = wanted.iter().map(|a| a.principal.clone()).collect();
    if !shard.security.acls.enabled() {
        let results = names
            .into_iter()
            .map(|name| result(name, Err((ErrorCode::SecurityDisabled, String::new()))))
            .collect();
        return SecurityResponse::CreateAcls { results };
    }
    let checked: Vec<_> = wanted.into_iter().map(acls::binding).collect();
    let valid: Vec<_> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let stored = changes::create_acls(shard, valid.clone()).await;
    changes::audit_acls(session, "create", &valid, stored.as_ref().err());
    let results = checked
        .into_iter()
        .zip(names)
        .map(|(checked, name)| {
            let outcome = match (checked, &stored) {
                (Ok(_), Ok(())) => Ok(()),
                (Ok(_), Err(e)) => Err((ErrorCode::Unknown, format!("{e:#}"))),
                (Err(why), _) => Err((ErrorCode::InvalidRequest, why)),
            };
            result(name, outcome)
        })
        .collect();
    SecurityResponse::CreateAcls { results }
}

async fn delete_acls(
    shard: &Rc<Shard>,
    session: &Session,
    filters: Vec<keel_protocol::api::AclFilter>,
) -> SecurityResponse {
    let failed = |error, message: String| DeleteAclsResult {
        error,
        message,
        removed: Vec::new(),
    };
    if !shard.security.acls.enabled() {
        let results = filters
            .iter()
            .map(|_| failed(ErrorCode::SecurityDisabled, String::new()))
            .collect();
        return SecurityResponse::DeleteAcls { results };
    }
    let checked: Vec<_> = filters.into_iter().map(acls::filter).collect();
    let valid: Vec<_> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let removed = match changes::delete_acls(shard, &valid).await {
        Ok(removed) => removed,
        Err(e) => {
            let results = checked
                .iter()
                .map(|_| failed(ErrorCode::Unknown, format!("{e:#}")))
                .collect();
            return SecurityResponse::DeleteAcls { results };
        }
    };
    changes::audit_acls(session, "delete", &removed.concat(), None);
    let mut removed = removed.into_iter();
    let results = checked
        .into_iter()
        .map(|c| match c {
            Ok(_) => DeleteAclsResult {
                error: ErrorCode::None,
                message: String::new(),
                removed: removed
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(acls::codes)
                    .collect(),
            },
            Err(why) => failed(ErrorCode::InvalidRequest, why),
        })
        .collect();
    SecurityResponse::DeleteAcls { results }
}

fn name_of(part: &Option<Option<String>>) -> QuotaName {
    match part {
        None => QuotaName::Absent,
        Some(None) => QuotaName::Default,
        Some(Some(name)) => QuotaName::Named(name.clone()),
    }
}

fn part_of(name: &QuotaName) -> Option<Option<String>> {
    match name {
        QuotaName::Absent => None,
        QuotaName::Default => Some(None),
        QuotaName::Named(name) => Some(Some(name.clone())),
    }
}

fn describe_quotas(shard: &Shard) -> SecurityResponse {
    let quotas = shard
        .security
        .quotas
        .entries()
        .into_iter()
        .map(|(entity, values)| QuotaEntry {
            user: name_of(&entity.user),
            client_id: name_of(&entity.client_id),
            values: values
                .into_iter()
                .map(|(kind, value)| (kind.key().to_owned(), Some(value)))
                .collect(),
        })
        .collect();
    SecurityResponse::DescribeQuotas {
        error: ErrorCode::None,
        quotas,
    }
}

async fn alter_quotas(
    shard: &Rc<Shard>,
    session: &Session,
    entries: Vec<QuotaEntry>,
) -> SecurityResponse {
    let mut results = Vec::new();
    for entry in entries {
        let entity = QuotaEntity {
            user: part_of(&entry.user),
            client_id: part_of(&entry.client_id),
        };
        let name = format!("{:?}/{:?}", entry.user, entry.client_id);
        let wanted: Result<Vec<_>, _> = entry
            .values
            .iter()
            .map(|(key, value)| quotas::change(&entity, key, *value))
            .collect();
        let outcome = match wanted {
            Err(why) => Err((ErrorCode::InvalidQuota, why.to_owned())),
            Ok(wanted) => changes::alter_quotas(shard, &wanted)
                .await
                .map(|()| changes::audit_quotas(session, &wanted))
                .map_err(|e| (ErrorCode::Unknown, format!("{e:#}"))),
        };
        results.push(result(name, outcome));
    }
    SecurityResponse::AlterQuotas { results }
}
