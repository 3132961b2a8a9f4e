//! Client quotas a broker enforces: keel-auth's [`Quotas`] over the entries in
//! `quotas.toml` (replaced durably at each change), shared by every shard.

use anyhow::Context;
use keel_auth::quota::{QuotaEntity, QuotaKind, Quotas as Rules};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One quota change: the entity, what it limits, and the new value (`None`: removed).
pub type QuotaChange = (QuotaEntity, QuotaKind, Option<f64>);

/// How the default entity is written (Kafka's `<default>`).
const DEFAULT: &str = "<default>";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    producer_byte_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer_byte_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_percentage: Option<f64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotasFile {
    #[serde(default)]
    quota: Vec<Stored>,
}

/// The broker's quotas.
#[derive(Debug)]
pub struct Quotas {
    /// `None` in a cluster (the metadata log keeps the quotas).
    path: Option<PathBuf>,
    rules: Mutex<Rules>,
    /// Whether any entry exists: without one, requests skip the lock.
    any: AtomicBool,
}

fn name(part: &Option<Option<String>>) -> Option<String> {
    part.as_ref()
        .map(|n| n.clone().unwrap_or_else(|| DEFAULT.into()))
}

fn part(text: Option<String>) -> Option<Option<String>> {
    text.map(|n| (n != DEFAULT).then_some(n))
}

impl Quotas {
    /// Loads `quotas.toml` from `data_dir` (none when absent).
    ///
    /// # Errors
    /// An unreadable or malformed file, named.
    pub fn load(data_dir: &Path) -> anyhow::Result<Quotas> {
        let path = data_dir.join("quotas.toml");
        let file: QuotasFile = match super::durable::read_optional(&path)? {
            Some(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?
            }
            None => QuotasFile::default(),
        };
        let mut rules = Rules::default();
        for q in file.quota {
            let entity = QuotaEntity {
                user: part(q.user),
                client_id: part(q.client_id),
            };
            anyhow::ensure!(
                entity.user.is_some() || entity.client_id.is_some(),
                "reading {}: a quota names a user or a client id",
                path.display()
            );
            rules.set(entity.clone(), QuotaKind::Produce, q.producer_byte_rate);
            rules.set(entity.clone(), QuotaKind::Fetch, q.consumer_byte_rate);
            rules.set(entity, QuotaKind::Request, q.request_percentage);
        }
        let any = AtomicBool::new(!rules.entries().is_empty());
        Ok(Quotas {
            path: Some(path),
            rules: Mutex::new(rules),
            any,
        })
    }

    /// No quotas yet: a cluster's come from its metadata log ([`Quotas::replace_from`]).
    pub fn in_metadata() -> Quotas {
        Quotas {
            path: None,
            rules: Mutex::new(Rules::default()),
            any: AtomicBool::new(false),
        }
    }

    /// Whether quotas are kept in `quotas.toml` (a single node) rather than the metadata log.
    pub fn in_file(&self) -> bool {
        self.path.is_some()
    }

    /// The metadata entry of one quota (`None`: removed): keyed by what it limits and
    /// `quotas.toml`'s text for its entity, the value the rate.
    ///
    /// # Errors
    /// The entity cannot be encoded.
    pub fn entry(
        entity: &QuotaEntity,
        kind: QuotaKind,
        value: Option<f64>,
    ) -> anyhow::Result<keel_controller::records::SecurityEntry> {
        let stored = Stored {
            user: name(&entity.user),
            client_id: name(&entity.client_id),
            producer_byte_rate: None,
            consumer_byte_rate: None,
            request_percentage: None,
        };
        let kind_name = kind.key();
        Ok(keel_controller::records::SecurityEntry {
            kind: super::KIND_QUOTA,
            key: format!("{kind_name}\n{}", toml::to_string(&stored)?),
            value: value.map(|v| v.to_string()),
        })
    }

    /// Makes the quotas those of the metadata `entries` (key and value).
    ///
    /// # Errors
    /// An entry that is not a quota (nothing changes then).
    pub fn replace_from<'a>(
        &self,
        entries: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<()> {
        let mut next = BTreeMap::<QuotaEntity, BTreeMap<QuotaKind, f64>>::new();
        for (key, value) in entries {
            let (kind, entity) = key
                .split_once('\n')
                .context("a quota entry without its kind")?;
            let kind = QuotaKind::parse(kind)
                .with_context(|| format!("a quota entry of unknown kind {kind:?}"))?;
            let stored: Stored = toml::from_str(entity).context("a quota entry's entity")?;
            let entity = QuotaEntity {
                user: part(stored.user),
                client_id: part(stored.client_id),
            };
            let rate: f64 = value.parse().context("a quota entry's rate")?;
            next.entry(entity).or_default().insert(kind, rate);
        }
        // Rates measure afresh from here (quotas change rarely).
        let any = !next.is_empty();
        *self.lock() = Rules::new(next);
        self.any.store(any, Ordering::Relaxed);
        Ok(())
    }

    /// Whether any quota is set (without one, nothing is measured).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Counts `bytes` of `kind` for `user` and `client_id` now: how long (ms) the client
    /// must wait to be back within its quota.
    pub fn record(&self, user: &str, client_id: &str, kind: QuotaKind, bytes: u64) -> u64 {
        if !self.any.load(Ordering::Relaxed) {
            return 0;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.lock().record(user, client_id, kind, bytes, now_ms)
    }

    /// Every entry and its values.
    pub fn entries(&self) -> Vec<(QuotaEntity, BTreeMap<QuotaKind, f64>)> {
        self.lock()
            .entries()
            .iter()
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect()
    }

    /// Applies `changes` ((entity, kind, value or removal)), written durably first.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn alter(&self, changes: &[QuotaChange]) -> anyhow::Result<()> {
        let mut rules = self.lock();
        let mut next = Rules::new(rules.entries().clone());
        for (entity, kind, value) in changes {
            next.set(entity.clone(), *kind, *value);
        }
        let quota = next
            .entries()
            .iter()
            .map(|(entity, values)| Stored {
                user: name(&entity.user),
                client_id: name(&entity.client_id),
                producer_byte_rate: values.get(&QuotaKind::Produce).copied(),
                consumer_byte_rate: values.get(&QuotaKind::Fetch).copied(),
                request_percentage: values.get(&QuotaKind::Request).copied(),
            })
            .collect();
        let text = toml::to_string(&QuotasFile { quota }).context("encoding quotas")?;
        let path = self
            .path
            .as_ref()
            .context("kept in the cluster's metadata log: changed through the controller")?;
        crate::registry::write_durably(path, text.as_bytes())?;
        for (entity, kind, value) in changes {
            rules.set(entity.clone(), *kind, *value);
        }
        self.any
            .store(!rules.entries().is_empty(), Ordering::Relaxed);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One value of a quota change for `entity`: `key` set to `value`, or removed (`None`).
///
/// # Errors
/// An entity naming neither a user nor a client id, an unknown key, or a value that is not
/// a positive number.
pub fn change(
    entity: &QuotaEntity,
    key: &str,
    value: Option<f64>,
) -> Result<QuotaChange, &'static str> {
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err("an entity names a user or a client id");
    }
    let kind = QuotaKind::parse(key)
        .ok_or("quotas here are producer_byte_rate, consumer_byte_rate and request_percentage")?;
    if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
        return Err("a quota is a positive number (bytes a second, or percent of a thread)");
    }
    Ok((entity.clone(), kind, value))
}

/// Counts `amount` of `kind` (bytes, or microseconds of handling) for this connection's
/// user and `client_id`: the throttle time (ms) to answer with; the connection reads
/// nothing more until it has passed (both listeners).
pub fn charge(
    shard: &crate::shard::Shard,
    session: &super::Session,
    client_id: &str,
    kind: QuotaKind,
    amount: u64,
) -> i32 {
    if !shard.security.quotas.any() {
        return 0;
    }
    let user = session.principal().map_or_else(String::new, |p| {
        p.0.strip_prefix("User:").unwrap_or(&p.0).to_owned()
    });
    let throttle = shard.security.quotas.record(&user, client_id, kind, amount);
    if throttle > 0 {
        session.throttle(std::time::Duration::from_millis(throttle));
    }
    throttle as i32
}

pin_project_lite::pin_project! {
    /// A request's handling, timed as Kafka's request quotas count it: the time its future
    /// spends being polled on this thread (not the time it waits for data, a long poll, or
    /// another shard).
    pub struct Timed<F> {
        #[pin]
        inner: F,
        busy: std::time::Duration,
        enabled: bool,
    }
}

impl<F: std::future::Future> Timed<F> {
    /// Times `inner` when any quota is set on this broker (no clock is read otherwise:
    /// every request passes here).
    pub fn new(inner: F, quotas: &Quotas) -> Timed<F> {
        Timed {
            inner,
            busy: std::time::Duration::ZERO,
            enabled: quotas.any(),
        }
    }
}

impl<F: std::future::Future> std::future::Future for Timed<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if !*this.enabled {
            return this.inner.poll(cx).map(|output| (output, *this.busy));
        }
        let started = std::time::Instant::now();
        let polled = this.inner.poll(cx);
        *this.busy += started.elapsed();
        polled.map(|output| (output, *this.busy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_survive_a_reload_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::load(dir.path()).unwrap();
        assert_eq!(quotas.record("alice", "c", QuotaKind::Produce, 1 << 30), 0);
        let alice = QuotaEntity {
            user: Some(Some("alice".into())),
            client_id: None,
        };
        let default_client = QuotaEntity {
            user: None,
            client_id: Some(None),
        };
        quotas
            .alter(&[
                (alice.clone(), QuotaKind::Produce, Some(1000.0)),
                (default_client.clone(), QuotaKind::Fetch, Some(5000.0)),
            ])
            .unwrap();
        let again = Quotas::load(dir.path()).unwrap();
        let entries: BTreeMap<_, _> = again.entries().into_iter().collect();
        assert_eq!(entries[&alice][&QuotaKind::Produce], 1000.0);
        assert_eq!(entries[&default_client][&QuotaKind::Fetch], 5000.0);
        assert!(again.record("alice", "c", QuotaKind::Produce, 100_000) > 0);
        again.alter(&[(alice, QuotaKind::Produce, None)]).unwrap();
        assert_eq!(Quotas::load(dir.path()).unwrap().entries().len(), 1);
    }

    // Goal: a request's handling time is the time spent in its polls, not the time it
    // waits between them (a long poll, another shard's answer).
    #[test]
    fn timed_counts_polling_not_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::load(dir.path()).unwrap();
        quotas
            .alter(&[(
                QuotaEntity {
                    user: Some(None),
                    client_id: None,
                },
                QuotaKind::Request,
                Some(50.0),
            )])
            .unwrap();
        let busy = |d: std::time::Duration| {
            let until = std::time::Instant::now() + d;
            while std::time::Instant::now() < until {}
        };
        let work = async {
            busy(std::time::Duration::from_millis(20));
            Sleep(None).await;
            busy(std::time::Duration::from_millis(20));
            7
        };
        let started = std::time::Instant::now();
        let (out, busy_time) = futures_lite::future::block_on(Timed::new(work, &quotas));
        assert_eq!(out, 7);
        assert!(started.elapsed() >= std::time::Duration::from_millis(140));
        let counted = std::time::Duration::from_millis(40)..std::time::Duration::from_millis(90);
        assert!(counted.contains(&busy_time), "{busy_time:?}");
        let quiet = Quotas::load(tempfile::tempdir().unwrap().path()).unwrap();
        let (_, untimed) = futures_lite::future::block_on(Timed::new(async { 1 }, &quiet));
        assert_eq!(
            untimed,
            std::time::Duration::ZERO,
            "no clock without quotas"
        );
    }

    /// Pending for 100 ms, woken from another thread: no poll runs meanwhile.
    struct Sleep(Option<std::sync::Arc<AtomicBool>>);

    impl std::future::Future for Sleep {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if let Some(done) = &self.0 {
                return match done.load(Ordering::SeqCst) {
                    true => std::task::Poll::Ready(()),
                    false => std::task::Poll::Pending,
                };
            }
            let done = std::sync::Arc::new(AtomicBool::new(false));
            let (flag, waker) = (done.clone(), cx.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                flag.store(true, Ordering::SeqCst);
                waker.wake();
            });
            self.0 = Some(done);
            std::task::Poll::Pending
        }
    }
}
