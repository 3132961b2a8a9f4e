//! Runs the controller simulation over many seeds.
//!
//! `cargo run -p keel-controller --release --example sim -- --seeds 10000` (from seed 1), or
//! `-- --seed N` for one seed, or `-- --from N --seeds M`; `--replicated` adds a replicated
//! partition under acks=all load with broker pauses and the Jepsen-style checker.

use keel_controller::sim::{run_seeds, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
    };
    let (first, count) = match value("--seed") {
        Some(seed) => (seed, 1),
        None => (
            value("--from").unwrap_or(1),
            value("--seeds").unwrap_or(1_000),
        ),
    };
    let config = SimConfig {
        voters: value("--voters").unwrap_or(3),
        replicated: args.iter().any(|a| a == "--replicated"),
        ..SimConfig::default()
    };
    let started = std::time::Instant::now();
    match run_seeds(first, count, &config) {
        Ok(report) => println!(
            "{count} seeds from {first} passed in {:.1} s: {report:?}",
            started.elapsed().as_secs_f64()
        ),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
