//! The controller quorum under seeded faults: a few hundred seeds in CI.
//! `KEEL_SIM_SEEDS=10000 cargo test -p keel-controller --release --test sim` runs more.

use keel_controller::sim::{run_seeds, Sim, SimConfig};

fn seeds() -> u64 {
    std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        // The slow tier (`KEEL_SLOW=1`, run by `.ci/run`) takes 300.
        .unwrap_or(if std::env::var_os("KEEL_SLOW").is_some() {
            300
        } else {
            100
        })
}

/// Runs `count` seeds from `first` and checks the run tested something: faults were
/// injected, changes acknowledged, leaders changed.
fn run_checked(first: u64, count: u64, config: &SimConfig) {
    let report = run_seeds(first, count, config).unwrap_or_else(|f| panic!("{f}"));
    assert!(
        report.crashes > 0 && report.splits > 0,
        "faults were injected: {report:?}"
    );
    assert!(
        report.acknowledged > 0,
        "changes were acknowledged: {report:?}"
    );
    assert!(
        report.terms_with_leader > count,
        "leaders changed: {report:?}"
    );
}

// Three voters and a broker-only node: every invariant holds after every step of every seed.
#[test]
fn three_voters_hold_every_invariant() {
    run_checked(1, seeds(), &SimConfig::default());
}

// Five voters, a fifth of the seeds (at least 20).
#[test]
fn five_voters_hold_every_invariant() {
    let config = SimConfig {
        voters: 5,
        ..SimConfig::default()
    };
    run_checked(10_000, (seeds() / 5).max(20), &config);
}

// One seed replays exactly: the same report twice.
#[test]
fn a_seed_replays_exactly() {
    let a = Sim::new(42, SimConfig::default()).run().unwrap();
    let b = Sim::new(42, SimConfig::default()).run().unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
