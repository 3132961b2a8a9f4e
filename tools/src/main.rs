//! keel: the command-line tool for Keel — topics, produce, consume, groups, and offline
//! segment inspection. Exit codes: 0 success, 1 error, 2 usage.

mod consume;
mod group;
mod log;
mod produce;
mod topic;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel command-line tool")]
struct Cli {
    /// Broker address.
    #[arg(long, global = true, default_value = "127.0.0.1:7070")]
    bootstrap: String,
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
    /// Produce one message per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print messages, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe and reset consumer groups.
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
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
            runtime.block_on(async move {
                match command {
                    Command::Topic { command } => topic::run(&cli.bootstrap, command).await,
                    Command::Produce(args) => produce::run(&cli.bootstrap, args).await,
                    Command::Consume(args) => consume::run(&cli.bootstrap, args).await,
                    Command::Group { command } => group::run(&cli.bootstrap, command).await,
                    Command::Log { .. } | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    };
    if let Err(e) = result {
        eprintln!("keel: {e:#}");
        std::process::exit(1);
    }
}
