//! `keel user ...`, `keel acl ...` and `keel quota ...`: SCRAM users, ACL bindings and
//! client quotas, through the native protocol's admin APIs (with `--command-config` for
//! the tool's own TLS and SASL settings).

use crate::Usage;
use keel_auth::acl::{Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};
use keel_client::{Acl, AclFilter, Admin, Mechanism, QuotaEntry, QuotaName};

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Set a user's SCRAM credential (the password is salted here, never sent).
    Create {
        /// User name.
        name: String,
        /// SCRAM-SHA-512 or SCRAM-SHA-256.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// The password.
        #[arg(
            long,
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user's credential (every SCRAM mechanism unless one is named).
    Delete {
        /// User name.
        name: String,
        /// Only this mechanism.
        #[arg(long)]
        mechanism: Option<String>,
    },
    /// Users, their mechanisms and iteration counts.
    List,
}

/// Which bindings an `acl` command names.
#[derive(clap::Args)]
pub struct AclArgs {
    /// `User:NAME` (or `User:*`).
    #[arg(long)]
    principal: Option<String>,
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL.
    #[arg(long)]
    operation: Option<String>,
    /// A topic (or a prefix, with --prefixed; `*` for every topic).
    #[arg(long, conflicts_with_all = ["group", "cluster"])]
    topic: Option<String>,
    /// A consumer group (or a prefix, with --prefixed).
    #[arg(long, conflicts_with = "cluster")]
    group: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// The name is a prefix.
    #[arg(long)]
    prefixed: bool,
    /// DENY instead of ALLOW (list, remove: DENY bindings only).
    #[arg(long)]
    deny: bool,
    /// The client's address (`*`: any).
    #[arg(long)]
    host: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum AclCommand {
    /// Add a binding: --principal, --operation and one of --topic, --group, --cluster.
    Add(AclArgs),
    /// Bindings matching what is given (everything when nothing is).
    List(AclArgs),
    /// Remove the bindings matching what is given (at least one option).
    Remove(AclArgs),
}

#[derive(clap::Subcommand)]
pub enum QuotaCommand {
    /// Set byte rates and a request percentage for a user (and client id); `--user
    /// default` / `--client-id default` set the defaults. A value of 0 removes it.
    Set {
        /// User name, or `default`.
        #[arg(long, required_unless_present = "client_id")]
        user: Option<String>,
        /// Client id, or `default`.
        #[arg(long)]
        client_id: Option<String>,
        /// Produced bytes a second.
        #[arg(long)]
        producer_byte_rate: Option<u64>,
        /// Fetched bytes a second.
        #[arg(long)]
        consumer_byte_rate: Option<u64>,
        /// Time handling the client's requests, in percent of one request-handling
        /// thread (Kafka's request_percentage).
        #[arg(long)]
        request_percentage: Option<f64>,
    },
    /// Every quota entry.
    List,
}

pub async fn run_user(target: &crate::Target, command: UserCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        UserCommand::Create {
            name,
            mechanism,
            password,
            password_stdin,
        } => {
            let mechanism = scram(&mechanism)?;
            let password = match (password, password_stdin) {
                (Some(password), _) => password,
                (None, _) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            if password.is_empty() {
                return Err(Usage("the password is empty".into()).into());
            }
            admin.create_user(&name, mechanism, &password).await?;
            out!("user {name} set for {mechanism}");
        }
        UserCommand::Delete { name, mechanism } => {
            let mechanisms = match mechanism {
                Some(m) => vec![scram(&m)?],
                None => vec![Mechanism::ScramSha512, Mechanism::ScramSha256],
            };
            let mut deleted = 0;
            for mechanism in mechanisms {
                match admin.delete_user(&name, mechanism).await {
                    Ok(()) => deleted += 1,
                    Err(keel_client::Error::Broker {
                        code: keel_protocol::api::ErrorCode::ResourceNotFound,
                        ..
                    }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            anyhow::ensure!(deleted > 0, "user {name} has no such credential");
            out!("user {name} deleted");
        }
        UserCommand::List => {
            for user in admin.list_users().await? {
                for (mechanism, iterations) in &user.credentials {
                    out!("{}\t{mechanism}\titerations={iterations}", user.user);
                }
            }
        }
    }
    Ok(())
}

fn scram(name: &str) -> anyhow::Result<Mechanism> {
    Mechanism::parse(&name.to_ascii_uppercase())
        .filter(|m| m.scram().is_some())
        .ok_or_else(|| {
            Usage(format!(
                "--mechanism: SCRAM-SHA-512 or SCRAM-SHA-256, got {name:?}"
            ))
            .into()
        })
}

pub async fn run_acl(target: &crate::Target, command: AclCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        AclCommand::Add(args) => {
            let acl = binding(&args)?;
            let shown = show(&acl);
            admin.create_acls(vec![acl]).await?;
            out!("added {shown}");
        }
        AclCommand::List(args) => {
            for acl in admin.list_acls(filter(&args)?).await? {
                out!("{}", show(&acl));
            }
        }
        AclCommand::Remove(args) => {
            let nothing = args.principal.is_none()
                && args.operation.is_none()
                && args.topic.is_none()
                && args.group.is_none()
                && !args.cluster
                && args.host.is_none();
            if nothing {
                return Err(Usage("name what to remove (removing every binding takes --principal 'User:*' at least)".into()).into());
            }
            let removed = admin.delete_acls(filter(&args)?).await?;
            for acl in &removed {
                out!("removed {}", show(acl));
            }
            anyhow::ensure!(!removed.is_empty(), "no binding matches");
        }
    }
    Ok(())
}

/// The resource an `acl` command names, if any.
fn resource(args: &AclArgs) -> Option<(ResourceType, String)> {
    if let Some(topic) = &args.topic {
        return Some((ResourceType::Topic, topic.clone()));
    }
    if let Some(group) = &args.group {
        return Some((ResourceType::Group, group.clone()));
    }
    args.cluster
        .then(|| (ResourceType::Cluster, CLUSTER_NAME.to_owned()))
}

fn operation(name: &str) -> anyhow::Result<Operation> {
    Operation::parse(name)
        .filter(|o| *o != Operation::Any)
        .ok_or_else(|| Usage(format!("--operation: unknown operation {name:?}")).into())
}

fn binding(args: &AclArgs) -> anyhow::Result<Acl> {
    let (resource_type, name) =
        resource(args).ok_or_else(|| Usage("one of --topic, --group or --cluster".into()))?;
    let principal = args
        .principal
        .clone()
        .ok_or_else(|| Usage("--principal User:NAME".into()))?;
    let operation = operation(
        args.operation
            .as_deref()
            .ok_or_else(|| Usage("--operation".into()))?,
    )?;
    let pattern = match args.prefixed {
        true => PatternType::Prefixed,
        false => PatternType::Literal,
    };
    Ok(Acl {
        resource_type: resource_type as i8,
        name,
        pattern: pattern as i8,
        principal,
        host: args.host.clone().unwrap_or_else(|| "*".into()),
        operation: operation as i8,
        permission: permission(args) as i8,
    })
}

fn permission(args: &AclArgs) -> Permission {
    match args.deny {
        true => Permission::Deny,
        false => Permission::Allow,
    }
}

fn filter(args: &AclArgs) -> anyhow::Result<AclFilter> {
    let resource = resource(args);
    let pattern = match (args.prefixed, &resource) {
        (true, _) => PatternType::Prefixed,
        (false, Some(_)) => PatternType::Literal,
        (false, None) => PatternType::Any,
    };
    Ok(AclFilter {
        resource_type: resource.as_ref().map_or(ResourceType::Any, |r| r.0) as i8,
        name: resource.map(|r| r.1),
        pattern: pattern as i8,
        principal: args.principal.clone(),
        host: args.host.clone(),
        operation: match &args.operation {
            Some(name) => operation(name)? as i8,
            None => Operation::Any as i8,
        },
        // ALLOW and DENY bindings alike, unless --deny asks for DENY ones only.
        permission: match args.deny {
            true => Permission::Deny as i8,
            false => Permission::Any as i8,
        },
    })
}

/// `ALLOW User:alice READ TOPIC:orders- PREFIXED from *`.
fn show(acl: &Acl) -> String {
    let name = |code, of: fn(i8) -> Option<&'static str>| of(code).unwrap_or("?");
    format!(
        "{} {} {} {}:{} {} from {}",
        name(acl.permission, |c| Permission::from_code(c)
            .map(Permission::name)),
        acl.principal,
        name(acl.operation, |c| Operation::from_code(c)
            .map(Operation::name)),
        name(acl.resource_type, |c| ResourceType::from_code(c)
            .map(ResourceType::name)),
        acl.name,
        name(acl.pattern, |c| PatternType::from_code(c)
            .map(PatternType::name)),
        acl.host
    )
}

pub async fn run_quota(target: &crate::Target, command: QuotaCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        QuotaCommand::Set {
            user,
            client_id,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
        } => {
            let rate = |value: Option<u64>| value.map(|v| (v > 0).then_some(v as f64));
            let percentage = request_percentage.map(|v| (v > 0.0).then_some(v));
            let mut values = Vec::new();
            for (key, value) in [
                ("producer_byte_rate", rate(producer_byte_rate)),
                ("consumer_byte_rate", rate(consumer_byte_rate)),
                ("request_percentage", percentage),
            ] {
                if let Some(value) = value {
                    values.push((key.to_owned(), value));
                }
            }
            if values.is_empty() {
                return Err(
                    Usage("--producer-byte-rate and/or --consumer-byte-rate".into()).into(),
                );
            }
            let entry = QuotaEntry {
                user: quota_name(user.as_deref()),
                client_id: quota_name(client_id.as_deref()),
                values,
            };
            let shown = show_entity(&entry);
            admin.alter_quotas(vec![entry]).await?;
            out!("quota set for {shown}");
        }
        QuotaCommand::List => {
            for entry in admin.list_quotas().await? {
                let values: Vec<String> = entry
                    .values
                    .iter()
                    .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
                    .collect();
                out!("{}\t{}", show_entity(&entry), values.join("\t"));
            }
        }
    }
    Ok(())
}

fn quota_name(name: Option<&str>) -> QuotaName {
    match name {
        None => QuotaName::Absent,
        Some("default") => QuotaName::Default,
        Some(name) => QuotaName::Named(name.to_owned()),
    }
}

/// `user=alice client-id=<default>`.
fn show_entity(entry: &QuotaEntry) -> String {
    let part = |label: &str, name: &QuotaName| match name {
        QuotaName::Absent => None,
        QuotaName::Default => Some(format!("{label}=<default>")),
        QuotaName::Named(name) => Some(format!("{label}={name}")),
    };
    [
        part("user", &entry.user),
        part("client-id", &entry.client_id),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}
