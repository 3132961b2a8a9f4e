//! keel-bench: Keel's load generator: `produce`, `consume` and `e2e` against a broker, and
//! `engine`, `broker`, `client` measurements beside the hardware limits of the same run.

mod broker;
mod client;
mod engine;
mod iggy;
#[cfg(feature = "kafka")]
mod kafka;
mod limits;
mod load;
mod metadata;
mod mirror;
mod report;
mod scram;
mod suite;
mod suite_security;
mod suite_table;
mod svg;

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
    /// This machine's limits: raw O_DIRECT writes and raw loopback TCP.
    Limits(limits::LimitsArgs),
    /// Producers against a broker: throughput and produce latency.
    Produce(load::LoadArgs),
    /// A consumer group reading a topic: throughput.
    Consume(load::LoadArgs),
    /// Producers and consumers together: produce-to-consume latency.
    E2e(load::LoadArgs),
    /// Topic creation latency and metadata propagation time on a cluster.
    Metadata(metadata::MetadataArgs),
    /// A cluster link's rate against a plain consume of the same source, and its lag
    /// under steady load.
    Mirror(mirror::MirrorArgs),
    /// Limits, then every workload of the speed targets against a broker it starts (and,
    /// with --iggy DIR, against Apache Iggy) in one run: tables of figures and ratios.
    Suite(suite::SuiteArgs),
    /// Produce or consume through a Kafka listener with librdkafka (`--features kafka`).
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaArgs),
    /// Latency against throughput: open-loop e2e runs at fractions of the maximum.
    Sweep {
        #[command(flatten)]
        args: load::LoadArgs,
        /// Fractions of the closed-loop maximum, in percent.
        #[arg(long, value_delimiter = ',', default_value = "25,50,75,90")]
        percents: Vec<f64>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Engine(args) => engine::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Client(args) => client::run(args),
        Command::Limits(args) => limits::run(args),
        Command::Produce(args) => report::run(load::Mode::Produce, args),
        Command::Consume(args) => report::run(load::Mode::Consume, args),
        Command::E2e(args) => report::run(load::Mode::EndToEnd, args),
        Command::Suite(args) => suite::run(args),
        Command::Metadata(args) => metadata::run(args),
        Command::Mirror(args) => mirror::run(args),
        #[cfg(feature = "kafka")]
        Command::Kafka(args) => kafka::run(args),
        Command::Sweep { args, percents } => {
            let fractions: Vec<f64> = percents.iter().map(|p| p / 100.0).collect();
            report::sweep(args, &fractions)
        }
    }
}
