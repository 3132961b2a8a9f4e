//! ACL requests: CreateAcls, DescribeAcls, DeleteAcls (codes as Kafka's, checked by the
//! broker).

use crate::read::{Reader, Result};

pub use keel_protocol::api::{Acl as AclCreation, AclFilter as AclFilterCodes};

pub(super) fn acl_filter(r: &mut Reader) -> Result<AclFilterCodes> {
    let filter = AclFilterCodes {
        resource_type: r.i8("resource type")?,
        name: r.nullable_string("resource name")?,
        pattern: r.i8("pattern type")?,
        principal: r.nullable_string("principal")?,
        host: r.nullable_string("host")?,
        operation: r.i8("operation")?,
        permission: r.i8("permission")?,
    };
    Ok(filter)
}

pub(super) fn create_acls(r: &mut Reader) -> Result<Vec<AclCreation>> {
    r.array("creations", |r| {
        let creation = AclCreation {
            resource_type: r.i8("resource type")?,
            name: r.string("resource name")?,
            pattern: r.i8("pattern type")?,
            principal: r.string("principal")?,
            host: r.string("host")?,
            operation: r.i8("operation")?,
            permission: r.i8("permission")?,
        };
        r.tagged_fields()?;
        Ok(creation)
    })
}

pub(super) fn delete_acls(r: &mut Reader) -> Result<Vec<AclFilterCodes>> {
    r.array("filters", |r| {
        let filter = acl_filter(r)?;
        r.tagged_fields()?;
        Ok(filter)
    })
}

/// A SCRAM credential to set (AlterUserScramCredentials): the client salts the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUpsertion {
    /// User.
    pub name: String,
    /// Mechanism code (1: SCRAM-SHA-256, 2: SCRAM-SHA-512).
    pub mechanism: i8,
    /// PBKDF2 iterations.
    pub iterations: i32,
    /// Salt.
    pub salt: bytes::Bytes,
    /// The salted password (Hi(password, salt, iterations)).
    pub salted_password: bytes::Bytes,
}

/// AlterUserScramCredentials: deletions (user, mechanism code) and upsertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterScram {
    /// Credentials to delete.
    pub deletions: Vec<(String, i8)>,
    /// Credentials to set.
    pub upsertions: Vec<ScramUpsertion>,
}

pub(super) fn describe_scram(r: &mut Reader) -> Result<Option<Vec<String>>> {
    r.nullable_array("users", |r| {
        let name = r.string("user")?;
        r.tagged_fields()?;
        Ok(name)
    })
}

pub(super) fn alter_scram(r: &mut Reader) -> Result<AlterScram> {
    let deletions = r.array("deletions", |r| {
        let deletion = (r.string("user")?, r.i8("mechanism")?);
        r.tagged_fields()?;
        Ok(deletion)
    })?;
    let upsertions = r.array("upsertions", |r| {
        let upsertion = ScramUpsertion {
            name: r.string("user")?,
            mechanism: r.i8("mechanism")?,
            iterations: r.i32("iterations")?,
            salt: r.bytes("salt")?,
            salted_password: r.bytes("salted password")?,
        };
        r.tagged_fields()?;
        Ok(upsertion)
    })?;
    Ok(AlterScram {
        deletions,
        upsertions,
    })
}

/// One component of a DescribeClientQuotas filter: an entity type (`user`, `client-id`)
/// and a match: 0 this name, 1 the default, 2 any.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaMatch {
    /// `user` or `client-id`.
    pub entity_type: String,
    /// 0 exact, 1 default, 2 any.
    pub match_type: i8,
    /// The name for an exact match.
    pub name: Option<String>,
}

/// DescribeClientQuotas.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeQuotas {
    /// The components.
    pub components: Vec<QuotaMatch>,
    /// Only entities with exactly these components.
    pub strict: bool,
}

/// One entity's changes in AlterClientQuotas: (type, name or default) pairs and
/// (key, value, remove) operations.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaAlteration {
    /// The entity.
    pub entity: Vec<(String, Option<String>)>,
    /// The operations.
    pub ops: Vec<(String, f64, bool)>,
}

/// AlterClientQuotas.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterQuotas {
    /// The entities changed.
    pub entries: Vec<QuotaAlteration>,
    /// Check only.
    pub validate_only: bool,
}

pub(super) fn describe_quotas(r: &mut Reader) -> Result<DescribeQuotas> {
    let components = r.array("components", |r| {
        let component = QuotaMatch {
            entity_type: r.string("entity type")?,
            match_type: r.i8("match type")?,
            name: r.nullable_string("match")?,
        };
        r.tagged_fields()?;
        Ok(component)
    })?;
    Ok(DescribeQuotas {
        components,
        strict: r.bool("strict")?,
    })
}

pub(super) fn alter_quotas(r: &mut Reader) -> Result<AlterQuotas> {
    let entries = r.array("entries", |r| {
        let entity = r.array("entity", |r| {
            let part = (r.string("entity type")?, r.nullable_string("entity name")?);
            r.tagged_fields()?;
            Ok(part)
        })?;
        let ops = r.array("ops", |r| {
            let op = (r.string("key")?, r.f64("value")?, r.bool("remove")?);
            r.tagged_fields()?;
            Ok(op)
        })?;
        r.tagged_fields()?;
        Ok(QuotaAlteration { entity, ops })
    })?;
    Ok(AlterQuotas {
        entries,
        validate_only: r.bool("validate only")?,
    })
}
