//! Changing users, ACLs and quotas. On a single node each store writes its file in the
//! data directory. In a cluster a change is a list of security entries committed to the
//! controller's metadata log; every broker then applies the same entries
//! ([`super::Stores::replace_from_metadata`]), so users, ACLs and quotas survive a broker's
//! loss, a controller failover and a full restart, and are the same on every broker.

use crate::shard::Shard;
use keel_auth::acl::{AclBinding, AclFilter};
use keel_auth::{Mechanism, ScramCredential};
use keel_controller::records::SecurityEntry;
use std::rc::Rc;

use super::quotas::{QuotaChange, Quotas};
use super::users::Users;
use super::Session;

/// Commits `entries` through the controller, in changes of at most
/// [`keel_controller::image::SECURITY_CHANGE_ENTRIES_MAX`], and waits until this broker
/// applied them.
///
/// # Errors
/// The controller refused or did not answer in time (the outcome is then unknown).
async fn submit(shard: &Rc<Shard>, entries: Vec<SecurityEntry>) -> anyhow::Result<()> {
    let most = keel_controller::image::SECURITY_CHANGE_ENTRIES_MAX;
    for chunk in entries.chunks(most) {
        let request = keel_controller::node::Request::SetSecurity {
            entries: chunk.to_vec(),
        };
        crate::cluster::change(shard, request)
            .await
            .map_err(|e| anyhow::anyhow!("the controller: {e}"))?;
    }
    Ok(())
}

/// Sets `user`'s credential for `mechanism`, or removes it (`None`); whether the user had
/// one before.
///
/// # Errors
/// The file cannot be written, or the controller refused.
pub async fn set_user(
    shard: &Rc<Shard>,
    user: &str,
    mechanism: Mechanism,
    credential: Option<ScramCredential>,
) -> anyhow::Result<bool> {
    let users = &shard.security.users;
    let had = users.lookup(user, mechanism).is_some();
    if users.in_file() {
        match credential {
            Some(credential) => users.set(user, mechanism, credential)?,
            None => {
                users.delete(user, mechanism)?;
            }
        }
        return Ok(had);
    }
    if credential.is_none() && !had {
        return Ok(false);
    }
    let entry = Users::entry(user, mechanism, credential.as_ref())?;
    submit(shard, vec![entry]).await?;
    Ok(had)
}

/// Adds ACL `bindings` (already checked).
///
/// # Errors
/// The file cannot be written, or the controller refused.
pub async fn create_acls(shard: &Rc<Shard>, bindings: Vec<AclBinding>) -> anyhow::Result<()> {
    let acls = &shard.security.acls;
    if acls.in_file() {
        return acls.create(bindings);
    }
    let entries = bindings
        .iter()
        .map(|b| super::acls::Acls::entry(b, true))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if entries.is_empty() {
        return Ok(());
    }
    submit(shard, entries).await
}

/// Removes what each filter matches; the bindings removed per filter.
///
/// # Errors
/// The file cannot be written, or the controller refused.
pub async fn delete_acls(
    shard: &Rc<Shard>,
    filters: &[AclFilter],
) -> anyhow::Result<Vec<Vec<AclBinding>>> {
    let acls = &shard.security.acls;
    if acls.in_file() {
        return acls.delete(filters);
    }
    let matched: Vec<Vec<AclBinding>> = filters.iter().map(|f| acls.describe(f)).collect();
    let mut unique: Vec<&AclBinding> = matched.iter().flatten().collect();
    unique.sort_by_key(|b| format!("{b:?}"));
    unique.dedup();
    let entries = unique
        .into_iter()
        .map(|b| super::acls::Acls::entry(b, false))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !entries.is_empty() {
        submit(shard, entries).await?;
    }
    Ok(matched)
}

/// Applies quota `changes`.
///
/// # Errors
/// The file cannot be written, or the controller refused.
pub async fn alter_quotas(shard: &Rc<Shard>, changes: &[QuotaChange]) -> anyhow::Result<()> {
    let quotas = &shard.security.quotas;
    if quotas.in_file() {
        return quotas.alter(changes);
    }
    let entries = changes
        .iter()
        .map(|(entity, kind, value)| Quotas::entry(entity, *kind, *value))
        .collect::<anyhow::Result<Vec<_>>>()?;
    submit(shard, entries).await
}

/// Makes the users `--add-scram` names that the metadata does not have yet (called by
/// [`super::settle::settle`] once this broker has caught up: a cluster's users live in its
/// metadata log). Each is retried for a minute while no controller answers.
pub async fn add_scram_users(shard: &Rc<Shard>, view: &crate::cluster::ClusterView) {
    for (mechanism, name, password) in shard.config.security.add_scram.clone() {
        let key = (super::KIND_USER, format!("{mechanism} {name}"));
        for attempt in 0..60 {
            if attempt > 0 {
                glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
            }
            if view.image().security().contains_key(&key) {
                break;
            }
            let made = match super::users::new_credential(mechanism, &password) {
                Ok(credential) => set_user(shard, &name, mechanism, Some(credential)).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(_) => {
                    tracing::info!(user = %name, %mechanism, "user made (--add-scram)");
                    break;
                }
                Err(e) => {
                    tracing::debug!(user = %name, error = %format!("{e:#}"), "--add-scram: retrying")
                }
            }
        }
    }
}

/// The audit lines of an ACL change (one per binding).
pub fn audit_acls(
    session: &Session,
    what: &str,
    bindings: &[AclBinding],
    error: Option<&anyhow::Error>,
) {
    let by = session.principal().map(|p| p.0).unwrap_or_default();
    for b in bindings {
        tracing::info!(target: "keel::audit", peer = %session.peer, principal = %by, change = what,
            acl = %format!("{} {} {}:{} {} {} from {}", b.permission.name(), b.principal, b.resource_type.name(), b.name, b.pattern.name(), b.operation.name(), b.host),
            failed = error.map(|e| format!("{e:#}")).unwrap_or_default(), "ACL change");
    }
}

/// The audit line of a SCRAM credential change.
pub fn audit_user(session: &Session, change: &str, user: &str, mechanism: Mechanism) {
    let by = session.principal().map(|p| p.0).unwrap_or_default();
    tracing::info!(target: "keel::audit", peer = %session.peer, principal = %by, change, user, %mechanism, "SCRAM credential change");
}

/// The audit line of a quota change.
pub fn audit_quotas(session: &Session, changes: &[QuotaChange]) {
    let by = session.principal().map(|p| p.0).unwrap_or_default();
    for (entity, kind, value) in changes {
        tracing::info!(target: "keel::audit", peer = %session.peer, principal = %by, ?entity, quota = kind.key(), ?value, "quota change");
    }
}
