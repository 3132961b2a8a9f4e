//! ACL requests: CreateAcls, DescribeAcls, DeleteAcls (codes as Kafka's, checked by the
//! broker).

use crate::read::{Reader, Result};

/// An ACL binding to create, with Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclCreation {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name.
    pub name: String,
    /// Pattern type code.
    pub pattern: i8,
    /// Principal (`User:NAME`).
    pub principal: String,
    /// Host.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// Permission code.
    pub permission: i8,
}

/// A filter over ACL bindings, with Kafka's codes; `None` strings match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilterCodes {
    /// Resource type code (1: any).
    pub resource_type: i8,
    /// Resource name.
    pub name: Option<String>,
    /// Pattern type code (1: any, 2: match).
    pub pattern: i8,
    /// Principal.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Operation code (1: any).
    pub operation: i8,
    /// Permission code (1: any).
    pub permission: i8,
}

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
