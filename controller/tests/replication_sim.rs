//! Replication under seeded faults (crashes losing unsynced data, pauses, splits that
//! isolate a leader, lost and reordered messages) with the Jepsen-style checker: no lost
//! acknowledged write, no two replicas with different data at an offset, no skipped or
//! reordered offset seen by the consumer, no read past the high watermark. A few hundred
//! seeds here; `cargo run -p keel-controller --release --example sim -- --replicated
//! --seeds 10000` runs more.

use keel_controller::sim::{run_seeds, SimConfig};

fn seeds() -> u64 {
    std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        // The slow tier (`KEEL_SLOW=1`, run by `.ci/run`) takes 200.
        .unwrap_or(if std::env::var_os("KEEL_SLOW").is_some() {
            200
        } else {
            60
        })
}

#[test]
fn replicated_partition_loses_nothing_acknowledged() {
    let config = SimConfig {
        replicated: true,
        ..SimConfig::default()
    };
    let report = run_seeds(1, seeds(), &config).unwrap_or_else(|f| panic!("{f}"));
    assert!(
        report.crashes > 0 && report.splits > 0 && report.pauses > 0,
        "faults were injected: {report:?}"
    );
    assert!(
        report.replicated_acknowledged > seeds() * 10,
        "appends were acknowledged: {report:?}"
    );
    assert!(report.replicated_reads > 0, "the consumer read: {report:?}");
    assert!(
        report.truncations > 0,
        "divergent suffixes were truncated: {report:?}"
    );
}
