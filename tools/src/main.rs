//! keel: the command-line tool for Keel — topics, produce, consume, groups, and offline
//! segment inspection. Exit codes: 0 success, 1 error, 2 usage.

/// Prints a line to standard output; a closed pipe (`keel ... | head`) ends the tool
/// quietly with status 0.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// Refuses how the tool was called: the message is printed and the exit status is 2.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::Usage(format!($($arg)*))))
    };
}

mod cluster;
mod consume;
mod group;
mod link;
mod log;
mod partition;
mod produce;
mod security;
mod topic;

use clap::{CommandFactory, Parser, Subcommand};

/// A usage error: exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Writes one line to standard output (see `out!`).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"));
    if let Err(e) = written {
        exit_on_write_error(&e);
    }
}

/// Ends the tool after standard output failed: quietly with 0 for a closed pipe.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("keel: writing to standard output: {e}");
    std::process::exit(1);
}

/// Where the tool connects and how.
pub struct Target {
    /// The bootstrap list.
    pub bootstrap: String,
    /// TLS settings, from `--command-config`.
    pub security: keel_client::ClientSecurity,
}

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel command-line tool")]
struct Cli {
    /// Broker address, or a comma-separated list (the first that answers is used).
    #[arg(long, global = true, default_value = "127.0.0.1:7070")]
    bootstrap: String,
    /// Client security settings, a Kafka properties file: security.protocol (PLAINTEXT,
    /// SSL, SASL_PLAINTEXT or SASL_SSL), ssl.ca.location, ssl.certificate.location,
    /// ssl.key.location, sasl.mechanism, sasl.username, sasl.password.
    #[arg(long, global = true)]
    command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Replicas and leadership of a topic's partitions (cluster mode).
    Partition {
        #[command(subcommand)]
        command: partition::PartitionCommand,
    },
    /// Brokers of a cluster.
    Broker {
        #[command(subcommand)]
        command: partition::BrokerCommand,
    },
    /// The controller, brokers and metadata of a cluster.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Produce one message per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print messages, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe and reset consumer groups.
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// SCRAM users (SASL).
    User {
        #[command(subcommand)]
        command: security::UserCommand,
    },
    /// ACL bindings (with the broker's --authorizer on).
    Acl {
        #[command(subcommand)]
        command: security::AclCommand,
    },
    /// Client quotas: produce and fetch byte rates per user and client id.
    Quota {
        #[command(subcommand)]
        command: security::QuotaCommand,
    },
    /// Cluster links: mirror another cluster's topics byte for byte (on the destination).
    Link {
        #[command(subcommand)]
        command: link::LinkCommand,
    },
    /// Inspect segment files offline.
    Log {
        #[command(subcommand)]
        command: log::LogCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            std::process::exit(if usage { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Log { command } => log::run(command),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut std::io::stdout());
            Ok(())
        }
        command => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("keel: cannot start: {e}");
                    std::process::exit(1);
                }
            };
            let security = match &cli.command_config {
                Some(path) => match keel_client::ClientSecurity::from_properties_file(path) {
                    Ok(security) => security,
                    Err(e) => {
                        eprintln!("keel: --command-config: {e}");
                        std::process::exit(2);
                    }
                },
                None => keel_client::ClientSecurity::default(),
            };
            let target = Target {
                bootstrap: cli.bootstrap.clone(),
                security,
            };
            let target = &target;
            runtime.block_on(async move {
                match command {
                    Command::Topic { command } => topic::run(target, command).await,
                    Command::Cluster { command } => cluster::run(target, command).await,
                    Command::Partition { command } => partition::run(target, command).await,
                    Command::Broker { command } => partition::run_broker(target, command).await,
                    Command::Produce(args) => produce::run(target, args).await,
                    Command::Consume(args) => consume::run(target, args).await,
                    Command::Group { command } => group::run(target, command).await,
                    Command::User { command } => security::run_user(target, command).await,
                    Command::Acl { command } => security::run_acl(target, command).await,
                    Command::Quota { command } => security::run_quota(target, command).await,
                    Command::Link { command } => link::run(target, command).await,
                    Command::Log { .. } | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    };
    if let Err(e) = result {
        eprintln!("keel: {e:#}");
        let usage = e.downcast_ref::<Usage>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
