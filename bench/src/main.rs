//! keel-bench: Keel's load generator. This first mode measures the storage engine against
//! the raw disk in the same run: `keel-bench engine --dir DIR`.

mod broker;
mod client;
mod engine;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keel-bench",
    version,
    about = "Keel load generator and storage benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Raw O_DIRECT writes vs engine appends (fsync never / always with 1 and N appenders).
    Engine(engine::EngineArgs),
    /// Produce and fetch against a running broker, beside raw loopback TCP.
    Broker(broker::BrokerArgs),
    /// One keel-client producer: msgs/s, MB/s and client CPU per GB.
    Client(client::ClientArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Engine(args) => engine::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Client(args) => client::run(args),
    }
}
