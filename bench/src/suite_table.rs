//! The suite's tables: each row Keel's figure against a reference of the same run (a
//! machine limit, plaintext, or Apache Iggy), medians over the rounds, as text and JSON.

use std::collections::BTreeMap;

/// One row of a table: Keel's figure against a reference of the same run.
pub(crate) struct Row {
    label: &'static str,
    keel: &'static str,
    reference: &'static str,
    /// Keel must reach at least this fraction of the reference (or, for latencies, stay
    /// under this many milliseconds: `reference` is then empty).
    target: f64,
}

pub(crate) const LIMIT_ROWS: &[Row] = &[
    Row {
        label: "produce, 8 partitions, 2 producers, acks=all (vs raw O_DIRECT + fdatasync/MiB)",
        keel: "produce_8p_2prod",
        reference: "disk_fdatasync",
        target: 0.6,
    },
    Row {
        label: "produce, 1 partition, 1 producer, acks=all (vs raw O_DIRECT + fdatasync/MiB)",
        keel: "produce_1p_1prod",
        reference: "disk_fdatasync",
        target: 0.25,
    },
    Row {
        label: "consume catch-up (cold), 2 partitions, 2 consumers (vs loopback TCP)",
        keel: "catchup_2p_2cons",
        reference: "loopback",
        target: 0.4,
    },
    Row {
        label: "end-to-end p99 at half the maximum rate, ms",
        keel: "e2e_half_rate_1p.p99_ms",
        reference: "",
        target: 2.0,
    },
    Row {
        label: "end-to-end p99.9 at half the maximum rate, ms",
        keel: "e2e_half_rate_1p.p999_ms",
        reference: "",
        target: 5.0,
    },
    Row {
        // No target in the issue: 10 ms, Iggy's published p99.9 at 800 MB/s.
        label: "end-to-end p99.99 at half the maximum rate, ms",
        keel: "e2e_half_rate_1p.p9999_ms",
        reference: "",
        target: 10.0,
    },
];

pub(crate) const TLS_ROWS: &[Row] = &[
    Row {
        label: "TLS produce, 1 producer, no fsync (vs the same in plaintext)",
        keel: "produce_1p_1prod_nofsync_tls",
        reference: "produce_1p_1prod_nofsync",
        target: 0.7,
    },
    Row {
        label: "TLS consume catch-up, 1 consumer (vs the same in plaintext)",
        keel: "catchup_1p_1cons_tls",
        reference: "catchup_1p_1cons",
        target: 0.7,
    },
];

pub(crate) const IGGY_ROWS: &[Row] = &[
    Row {
        label: "1 producer, 1 partition, fsync",
        keel: "produce_1p_1prod",
        reference: "iggy_1prod_fsync",
        target: 2.0,
    },
    Row {
        label: "2 producers, 2 partitions, fsync",
        keel: "produce_2p_2prod",
        reference: "iggy_2prod_fsync",
        target: 2.0,
    },
    Row {
        label: "1 producer, no fsync",
        keel: "produce_1p_1prod_nofsync",
        reference: "iggy_1prod",
        target: 2.0,
    },
    Row {
        label: "2 producers, no fsync",
        keel: "produce_2p_2prod_nofsync",
        reference: "iggy_2prod",
        target: 2.0,
    },
    Row {
        label: "1 consumer catch-up",
        keel: "catchup_1p_1cons",
        reference: "iggy_1cons",
        target: 2.0,
    },
];

pub(crate) fn medians(rounds: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in rounds {
        for (key, value) in round {
            all.entry(key.clone()).or_default().push(*value);
        }
    }
    all.into_iter()
        .map(|(key, mut values)| {
            values.sort_by(f64::total_cmp);
            (key, values[values.len() / 2])
        })
        .collect()
}

pub(crate) fn figure(medians: &BTreeMap<String, f64>, key: &str) -> f64 {
    medians.get(key).copied().unwrap_or(f64::NAN)
}

pub(crate) fn table(rows: &[Row], medians: &BTreeMap<String, f64>, reference_name: &str) -> String {
    let mut text = format!(
        "| workload | Keel | {reference_name} | ratio | must reach | met |\n|---|---|---|---|---|---|\n"
    );
    for row in rows {
        let keel = figure(medians, row.keel);
        if row.reference.is_empty() {
            text += &format!(
                "| {} | {keel:.2} ms | — | — | < {} ms | {} |\n",
                row.label,
                row.target,
                if keel < row.target { "yes" } else { "no" }
            );
        } else {
            let reference = figure(medians, row.reference);
            let ratio = keel / reference;
            text += &format!(
                "| {} | {keel:.0} MB/s | {reference:.0} MB/s | {ratio:.2} | ≥ {:.2} | {} |\n",
                row.label,
                row.target,
                if ratio >= row.target { "yes" } else { "no" }
            );
        }
    }
    text
}

pub(crate) fn rows_json(rows: &[Row], medians: &BTreeMap<String, f64>) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|row| {
            let keel = figure(medians, row.keel);
            let reference = (!row.reference.is_empty()).then(|| figure(medians, row.reference));
            let ratio = reference.map(|r| keel / r);
            let met = match ratio {
                Some(ratio) => ratio >= row.target,
                None => keel < row.target,
            };
            serde_json::json!({
                "workload": row.label,
                "keel": keel,
                "reference": reference,
                "ratio": ratio,
                "target": row.target,
                "met": met,
            })
        })
        .collect()
}
