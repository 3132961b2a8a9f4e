//! Admin calls for security: SCRAM users, ACL bindings and client quotas (the broker keeps
//! them in the cluster's metadata log, or in files on a single node). Each needs the
//! authorizer's permission on the cluster (DESCRIBE or ALTER; DESCRIBE_CONFIGS or
//! ALTER_CONFIGS for quotas) when one is on.

use super::{check, Admin};
use crate::error::{Error, Result};
use keel_auth::Mechanism;
use keel_protocol::api::{
    Acl, AclFilter, ErrorCode, QuotaEntry, Request, Response, ScramUpsertion, SecurityRequest,
    SecurityResponse, UserDescription,
};

/// PBKDF2 iterations of the credentials `create_user` makes (Kafka's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

impl Admin {
    async fn security(&self, request: SecurityRequest) -> Result<SecurityResponse> {
        match self.call(Request::Security(request)).await? {
            Response::Security(response) => Ok(response),
            _ => Err(Error::Protocol("a security response expected".into())),
        }
    }

    /// Every user with SCRAM credentials: their mechanisms and iteration counts.
    ///
    /// # Errors
    /// `ClusterAuthorizationFailed` without DESCRIBE on the cluster, I/O.
    pub async fn list_users(&self) -> Result<Vec<UserDescription>> {
        let request = SecurityRequest::DescribeUsers { users: Vec::new() };
        match self.security(request).await? {
            SecurityResponse::DescribeUsers {
                error: ErrorCode::None,
                users,
            } => Ok(users),
            SecurityResponse::DescribeUsers { error, .. } => Err(Error::broker(error, "")),
            _ => Err(Error::Protocol("describe-users response expected".into())),
        }
    }

    /// Sets `user`'s credential for a SCRAM `mechanism` from `password`: the password is
    /// salted and iterated here, so it never reaches the broker.
    ///
    /// # Errors
    /// A mechanism that is not SCRAM, the broker's refusal, I/O.
    pub async fn create_user(
        &self,
        user: &str,
        mechanism: Mechanism,
        password: &str,
    ) -> Result<()> {
        let hash = mechanism.scram().ok_or_else(|| {
            Error::broker(
                ErrorCode::UnsupportedSaslMechanism,
                "users are made for SCRAM-SHA-256 or SCRAM-SHA-512",
            )
        })?;
        let mut salt = [0u8; 32];
        getrandom::getrandom(&mut salt)
            .map_err(|e| Error::Protocol(format!("no randomness for a salt: {e}")))?;
        let salted = hash.salted_password(password.as_bytes(), &salt, SCRAM_ITERATIONS);
        let upsertion = ScramUpsertion {
            user: user.to_owned(),
            mechanism: mechanism.name().to_owned(),
            iterations: SCRAM_ITERATIONS,
            salt: salt.to_vec().into(),
            salted_password: salted.into(),
        };
        self.alter_users(vec![upsertion], Vec::new()).await
    }

    /// Removes `user`'s credential for `mechanism`.
    ///
    /// # Errors
    /// `ResourceNotFound` when there is none, the broker's refusal, I/O.
    pub async fn delete_user(&self, user: &str, mechanism: Mechanism) -> Result<()> {
        let deletion = (user.to_owned(), mechanism.name().to_owned());
        self.alter_users(Vec::new(), vec![deletion]).await
    }

    async fn alter_users(
        &self,
        upsertions: Vec<ScramUpsertion>,
        deletions: Vec<(String, String)>,
    ) -> Result<()> {
        let request = SecurityRequest::AlterUsers {
            upsertions,
            deletions,
        };
        match self.security(request).await? {
            SecurityResponse::AlterUsers { results } => check(results),
            _ => Err(Error::Protocol("alter-users response expected".into())),
        }
    }

    /// The ACL bindings `filter` matches.
    ///
    /// # Errors
    /// `SecurityDisabled` without an authorizer, the broker's refusal, I/O.
    pub async fn list_acls(&self, filter: AclFilter) -> Result<Vec<Acl>> {
        match self
            .security(SecurityRequest::DescribeAcls { filter })
            .await?
        {
            SecurityResponse::DescribeAcls {
                error: ErrorCode::None,
                acls,
                ..
            } => Ok(acls),
            SecurityResponse::DescribeAcls { error, message, .. } => {
                Err(Error::broker(error, message))
            }
            _ => Err(Error::Protocol("describe-acls response expected".into())),
        }
    }

    /// Adds ACL bindings.
    ///
    /// # Errors
    /// An invalid binding (`InvalidRequest`), `SecurityDisabled`, the broker's refusal, I/O.
    pub async fn create_acls(&self, acls: Vec<Acl>) -> Result<()> {
        match self.security(SecurityRequest::CreateAcls { acls }).await? {
            SecurityResponse::CreateAcls { results } => check(results),
            _ => Err(Error::Protocol("create-acls response expected".into())),
        }
    }

    /// Removes the bindings `filter` matches; the bindings removed.
    ///
    /// # Errors
    /// `SecurityDisabled`, the broker's refusal, I/O.
    pub async fn delete_acls(&self, filter: AclFilter) -> Result<Vec<Acl>> {
        let request = SecurityRequest::DeleteAcls {
            filters: vec![filter],
        };
        match self.security(request).await? {
            SecurityResponse::DeleteAcls { results } => {
                let mut removed = Vec::new();
                for result in results {
                    if result.error != ErrorCode::None {
                        return Err(Error::broker(result.error, result.message));
                    }
                    removed.extend(result.removed);
                }
                Ok(removed)
            }
            _ => Err(Error::Protocol("delete-acls response expected".into())),
        }
    }

    /// Every client quota entry.
    ///
    /// # Errors
    /// The broker's refusal, I/O.
    pub async fn list_quotas(&self) -> Result<Vec<QuotaEntry>> {
        match self.security(SecurityRequest::DescribeQuotas).await? {
            SecurityResponse::DescribeQuotas {
                error: ErrorCode::None,
                quotas,
            } => Ok(quotas),
            SecurityResponse::DescribeQuotas { error, .. } => Err(Error::broker(error, "")),
            _ => Err(Error::Protocol("describe-quotas response expected".into())),
        }
    }

    /// Sets (`Some`) or removes (`None`) quota values of entries.
    ///
    /// # Errors
    /// `InvalidQuota`, the broker's refusal, I/O.
    pub async fn alter_quotas(&self, changes: Vec<QuotaEntry>) -> Result<()> {
        match self
            .security(SecurityRequest::AlterQuotas { changes })
            .await?
        {
            SecurityResponse::AlterQuotas { results } => check(results),
            _ => Err(Error::Protocol("alter-quotas response expected".into())),
        }
    }
}
