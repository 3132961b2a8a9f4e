//! The ACLs a broker enforces when its authorizer is on: keel-auth's [`Authorizer`] over
//! the bindings in `acls.toml` in the data directory (replaced durably at each change).

use super::durable::Durable;
use anyhow::Context;
use keel_auth::acl::{
    AclBinding, AclFilter, Authorizer, Operation, PatternType, Permission, ResourceType,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One binding as written in `acls.toml` (Kafka's names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    resource_type: String,
    name: String,
    pattern: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclsFile {
    #[serde(default)]
    acl: Vec<Stored>,
}

/// Who is allowed what beside the bindings: the super users, and whether a resource no
/// binding selects is open to everyone (Kafka's `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Principals allowed everything.
    pub super_users: Vec<String>,
    /// A resource no binding selects is open to everyone.
    pub allow_if_no_acl: bool,
}

impl Policy {
    fn authorizer(&self, bindings: Vec<AclBinding>) -> Authorizer {
        let mut authorizer = Authorizer::new(bindings, self.super_users.clone());
        authorizer.allow_if_no_acl = self.allow_if_no_acl;
        authorizer
    }
}

/// The broker's ACLs, shared by every shard.
#[derive(Debug)]
pub struct Acls {
    enabled: bool,
    policy: Policy,
    current: Durable<Authorizer>,
}

impl Acls {
    /// Loads `acls.toml` from `data_dir`; `enabled` is `--authorizer on`.
    ///
    /// # Errors
    /// An unreadable or malformed file, named.
    pub fn load(data_dir: &Path, enabled: bool, policy: Policy) -> anyhow::Result<Acls> {
        let decode = |text: Option<&str>| {
            let bindings = text.map_or_else(|| Ok(Vec::new()), decode)?;
            Ok(policy.authorizer(bindings))
        };
        let current = Durable::load(data_dir.join("acls.toml"), decode, encode)?;
        Ok(Acls {
            enabled,
            policy,
            current,
        })
    }

    /// No bindings yet: a cluster's come from its metadata log ([`Acls::replace_from`]).
    pub fn in_metadata(enabled: bool, policy: Policy) -> Acls {
        Acls {
            enabled,
            current: Durable::in_metadata(policy.authorizer(Vec::new()), encode),
            policy,
        }
    }

    /// Whether bindings are kept in `acls.toml` (a single node) rather than the metadata log.
    pub fn in_file(&self) -> bool {
        self.current.in_file()
    }

    /// The metadata entry of `binding` (present or removed): keyed by `acls.toml`'s text
    /// for that one binding.
    ///
    /// # Errors
    /// The binding cannot be encoded.
    pub fn entry(
        binding: &AclBinding,
        present: bool,
    ) -> anyhow::Result<keel_controller::records::SecurityEntry> {
        let one = Authorizer::new(vec![binding.clone()], Vec::new());
        Ok(keel_controller::records::SecurityEntry {
            kind: super::KIND_ACL,
            key: encode(&one)?,
            value: present.then(String::new),
        })
    }

    /// Makes the bindings those of the metadata entries' `keys`.
    ///
    /// # Errors
    /// A key that is not a binding (nothing changes then).
    pub fn replace_from<'a>(&self, keys: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
        let mut bindings = Vec::new();
        for key in keys {
            bindings.extend(decode(key)?);
        }
        self.current.replace(self.policy.authorizer(bindings));
        Ok(())
    }

    /// Whether the authorizer is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `principal` from `host` may do `operation` on `name` (always, when the
    /// authorizer is off).
    pub fn allows(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !self.enabled
            || self
                .read()
                .allows(principal, host, operation, resource_type, name)
    }

    /// Whether `principal` may do `operation` on some resource of `resource_type`.
    pub fn allows_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        !self.enabled
            || self
                .read()
                .allows_any(principal, host, operation, resource_type)
    }

    /// The bindings `filter` matches.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.read()
            .bindings()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Adds `bindings` (already checked), written durably before they apply.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn create(&self, bindings: Vec<AclBinding>) -> anyhow::Result<()> {
        self.change(|acls| {
            for binding in bindings {
                acls.add(binding);
            }
        })
    }

    /// Removes what each filter matches, written durably; the bindings removed per filter.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn delete(&self, filters: &[AclFilter]) -> anyhow::Result<Vec<Vec<AclBinding>>> {
        self.change(|acls| filters.iter().map(|f| acls.remove(f)).collect())
    }

    fn change<T>(&self, change: impl FnOnce(&mut Authorizer) -> T) -> anyhow::Result<T> {
        self.current.change(change)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Authorizer> {
        self.current.read()
    }
}

fn decode(text: &str) -> anyhow::Result<Vec<AclBinding>> {
    let file: AclsFile = toml::from_str(text)?;
    file.acl
        .into_iter()
        .map(|s| {
            let binding = AclBinding {
                resource_type: ResourceType::parse(&s.resource_type)
                    .context("an ACL with an unknown resource type")?,
                name: s.name,
                pattern: PatternType::parse(&s.pattern)
                    .context("an ACL with an unknown pattern")?,
                principal: s.principal,
                host: s.host,
                operation: Operation::parse(&s.operation)
                    .context("an ACL with an unknown operation")?,
                permission: Permission::parse(&s.permission)
                    .context("an ACL with an unknown permission")?,
            };
            match binding.invalid() {
                Some(why) => anyhow::bail!("an invalid ACL ({why}): {binding:?}"),
                None => Ok(binding),
            }
        })
        .collect()
}

fn encode(acls: &Authorizer) -> anyhow::Result<String> {
    let acl = acls
        .bindings()
        .map(|b| Stored {
            resource_type: b.resource_type.name().into(),
            name: b.name.clone(),
            pattern: b.pattern.name().into(),
            principal: b.principal.clone(),
            host: b.host.clone(),
            operation: b.operation.name().into(),
            permission: b.permission.name().into(),
        })
        .collect();
    toml::to_string(&AclsFile { acl }).context("encoding ACLs")
}

/// The binding `acl`'s codes give, or why it cannot be stored.
///
/// # Errors
/// An unknown code, or a binding [`AclBinding::invalid`] refuses.
pub fn binding(acl: keel_protocol::api::Acl) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(acl.resource_type).ok_or("unknown resource type")?,
        name: acl.name,
        pattern: PatternType::from_code(acl.pattern).ok_or("unknown pattern type")?,
        principal: acl.principal,
        host: acl.host,
        operation: Operation::from_code(acl.operation).ok_or("unknown operation")?,
        permission: Permission::from_code(acl.permission).ok_or("unknown permission")?,
    };
    match binding.invalid() {
        Some(why) => Err(why.to_owned()),
        None => Ok(binding),
    }
}

/// The filter `codes` give.
///
/// # Errors
/// An unknown code.
pub fn filter(codes: keel_protocol::api::AclFilter) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: Some(
            ResourceType::from_code(codes.resource_type).ok_or("unknown resource type")?,
        ),
        name: codes.name,
        pattern: Some(PatternType::from_code(codes.pattern).ok_or("unknown pattern type")?),
        principal: codes.principal,
        host: codes.host,
        operation: Some(Operation::from_code(codes.operation).ok_or("unknown operation")?),
        permission: Some(Permission::from_code(codes.permission).ok_or("unknown permission")?),
    })
}

/// `binding` with its codes, as the native protocol carries it.
pub fn codes(binding: AclBinding) -> keel_protocol::api::Acl {
    keel_protocol::api::Acl {
        resource_type: binding.resource_type as i8,
        name: binding.name,
        pattern: binding.pattern as i8,
        principal: binding.principal,
        host: binding.host,
        operation: binding.operation as i8,
        permission: binding.permission as i8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_orders(permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            name: "orders.".into(),
            pattern: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission,
        }
    }

    #[test]
    fn with_allow_everyone_a_resource_no_binding_selects_is_open_after_reloads_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let open = Policy {
            allow_if_no_acl: true,
            ..Policy::default()
        };
        let may = |acls: &Acls, principal, topic| {
            acls.allows(principal, "h", Operation::Read, ResourceType::Topic, topic)
        };
        let acls = Acls::load(dir.path(), true, open.clone()).unwrap();
        acls.create(vec![read_orders(Permission::Allow)]).unwrap();
        for acls in [&acls, &Acls::load(dir.path(), true, open.clone()).unwrap()] {
            assert!(may(acls, "User:bob", "payments"), "no binding: open");
            assert!(may(acls, "User:alice", "orders.eu"));
            assert!(
                !may(acls, "User:bob", "orders.eu"),
                "bound: the bindings decide"
            );
        }
        let cluster = Acls::in_metadata(true, open);
        assert!(may(&cluster, "User:bob", "payments"));
        let key = Acls::entry(&read_orders(Permission::Allow), true)
            .unwrap()
            .key;
        cluster.replace_from(std::iter::once(key.as_str())).unwrap();
        assert!(may(&cluster, "User:bob", "payments"));
        assert!(!may(&cluster, "User:bob", "orders.eu"));
        let closed = Acls::load(dir.path(), true, Policy::default()).unwrap();
        assert!(!may(&closed, "User:bob", "payments"), "off by default");
    }

    #[test]
    fn acls_survive_a_reload_and_decide_only_when_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let acls = Acls::load(dir.path(), true, Policy::default()).unwrap();
        acls.create(vec![read_orders(Permission::Allow)]).unwrap();
        let again = Acls::load(dir.path(), true, Policy::default()).unwrap();
        let may = |acls: &Acls, topic| {
            acls.allows(
                "User:alice",
                "h",
                Operation::Read,
                ResourceType::Topic,
                topic,
            )
        };
        assert!(may(&again, "orders.eu"));
        assert!(!may(&again, "payments"));
        let off = Acls::load(dir.path(), false, Policy::default()).unwrap();
        assert!(may(&off, "payments"));
        let removed = again
            .delete(&[AclFilter {
                principal: Some("User:alice".into()),
                ..Default::default()
            }])
            .unwrap();
        assert_eq!(removed, [vec![read_orders(Permission::Allow)]]);
        assert!(Acls::load(dir.path(), true, Policy::default())
            .unwrap()
            .describe(&AclFilter::default())
            .is_empty());
    }

    #[test]
    fn a_malformed_acls_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("acls.toml"),
            "[[acl]]\nresource_type='TOPIC'\nname='t'\npattern='MATCH'\nprincipal='User:a'\nhost='*'\noperation='READ'\npermission='ALLOW'\n",
        )
        .unwrap();
        let error = format!(
            "{:#}",
            Acls::load(dir.path(), true, Policy::default()).unwrap_err()
        );
        assert!(
            error.contains("acls.toml") && error.contains("invalid"),
            "{error}"
        );
    }
}
