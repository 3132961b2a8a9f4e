//! Who is on the other end of a connection: the listener's security protocol, SASL
//! exchanges ([`sasl`]) against the users' stored credentials ([`users`]), and the
//! principal a connection is fixed to once authenticated.

pub mod acls;
pub mod authenticate;
pub mod changes;
pub mod durable;
pub mod gate;
pub mod peer;
pub mod quotas;
pub mod sasl;
pub mod settle;
pub mod tls;
pub mod users;

pub use crate::config::security::SecurityProtocol;
use std::cell::RefCell;
use std::rc::Rc;

/// Who a connection acts as: `User:NAME` (Kafka's principal), `User:ANONYMOUS` on a
/// listener without authentication.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(pub String);

impl Principal {
    /// The principal of unauthenticated connections.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `User:name`.
    pub fn user(name: &str) -> Principal {
        Principal(format!("User:{name}"))
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client's verified TLS certificate says.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The principal its subject maps to.
    pub principal: Principal,
    /// The broker it proves, when its common name is `keel-broker-ID`.
    pub broker: Option<u32>,
}

/// Kinds of security metadata entries (keel-controller keeps them as text).
pub const KIND_USER: u8 = 1;
/// An ACL binding.
pub const KIND_ACL: u8 = 2;
/// A client quota.
pub const KIND_QUOTA: u8 = 3;

/// What every shard reads to know who is who and who may do what.
#[derive(Debug)]
pub struct Stores {
    /// The users SASL authenticates.
    pub users: users::Users,
    /// The ACLs.
    pub acls: acls::Acls,
    /// The client quotas.
    pub quotas: quotas::Quotas,
    /// TLS settings, when a listener is SSL or SASL_SSL.
    pub tls: Option<tls::Tls>,
    /// Whether the users, ACLs and quotas are the cluster's yet.
    pub settled: settle::Settled,
}

impl Stores {
    /// Makes the users, ACLs and quotas those of a cluster's metadata `now` (by kind and
    /// key), replacing only the stores whose entries differ from `before` (so a new user
    /// does not restart the quotas' windows). An entry a broker cannot read leaves that
    /// store as it was (logged).
    pub fn replace_from_metadata(
        &self,
        before: &std::collections::BTreeMap<(u8, String), String>,
        now: &std::collections::BTreeMap<(u8, String), String>,
    ) {
        fn of(
            entries: &std::collections::BTreeMap<(u8, String), String>,
            kind: u8,
        ) -> impl Iterator<Item = (&str, &str)> {
            entries
                .range((kind, String::new())..(kind + 1, String::new()))
                .map(|((_, key), value)| (key.as_str(), value.as_str()))
        }
        let changed = |kind| of(before, kind).ne(of(now, kind));
        let mut results = Vec::new();
        if changed(KIND_USER) {
            results.push((
                "users",
                self.users.replace_from(of(now, KIND_USER).map(|(_, v)| v)),
            ));
        }
        if changed(KIND_ACL) {
            results.push((
                "ACLs",
                self.acls.replace_from(of(now, KIND_ACL).map(|(k, _)| k)),
            ));
        }
        if changed(KIND_QUOTA) {
            results.push(("quotas", self.quotas.replace_from(of(now, KIND_QUOTA))));
        }
        for (what, result) in results {
            if let Err(e) = result {
                tracing::error!(what, error = %format!("{e:#}"), "security metadata not applied");
            }
        }
    }
}

/// One connection's identity: where it comes from and, once fixed, who it is. Requests of
/// one connection share it (they are served concurrently, on one thread).
#[derive(Debug)]
pub struct Session {
    /// The peer's address, for logs.
    pub peer: Rc<str>,
    /// The peer's IP address (what ACL hosts name).
    pub host: Rc<str>,
    /// The SASL exchange, on SASL listeners.
    pub sasl: Option<RefCell<sasl::Sasl>>,
    /// Which of its protocol's listeners it came through (Kafka's listeners are numbered
    /// in `--kafka-listeners` order).
    pub listener: usize,
    /// What the client's TLS certificate says, when it showed one.
    pub certificate: Option<Certificate>,
    /// Until when the connection's next request is not read (a quota's throttle).
    throttled_until: std::cell::Cell<Option<std::time::Instant>>,
    /// When its SASL session ends unless it authenticates again (KIP-368).
    expires: std::cell::Cell<Option<std::time::Instant>>,
}

impl Session {
    /// A session on listener number `listener` with `protocol`, offering `mechanisms` when
    /// it is SASL (and re-authentication when `reauthentication`); `certificate` is what the
    /// client's TLS certificate says.
    pub fn new(
        peer: Rc<str>,
        (protocol, listener): (SecurityProtocol, usize),
        (mechanisms, reauthentication): (&[keel_auth::Mechanism], bool),
        certificate: Option<Certificate>,
    ) -> Session {
        let host = peer
            .rsplit_once(':')
            .map_or(&*peer, |(ip, _)| ip)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .into();
        Session {
            listener,
            throttled_until: std::cell::Cell::new(None),
            host,
            peer,
            certificate,
            expires: std::cell::Cell::new(None),
            sasl: protocol
                .sasl()
                .then(|| RefCell::new(sasl::Sasl::new(mechanisms.to_vec(), reauthentication))),
        }
    }

    /// Who the connection acts as: on a SASL listener the authenticated user (`None`
    /// until its exchange succeeded); otherwise who its certificate names, or anonymous.
    pub fn principal(&self) -> Option<Principal> {
        match &self.sasl {
            None => Some(
                self.certificate
                    .as_ref()
                    .map_or_else(Principal::anonymous, |c| c.principal.clone()),
            ),
            Some(sasl) => sasl.borrow().principal().cloned(),
        }
    }

    /// Whether the connection may be served: on a SASL listener, once its exchange
    /// succeeded, or when its certificate proves a broker (followers fetch from the
    /// native listener without SASL). No allocation: asked on every request.
    pub fn authenticated(&self) -> bool {
        self.sasl
            .as_ref()
            .is_none_or(|sasl| sasl.borrow().principal().is_some())
            || self.is_broker()
    }

    /// The SASL session ends `lifetime` from now unless the client authenticates again.
    pub fn expire_in(&self, lifetime: std::time::Duration) {
        self.expires.set(Some(std::time::Instant::now() + lifetime));
    }

    /// Whether the SASL session has ended (it must authenticate again before anything
    /// else is served).
    pub fn expired(&self) -> bool {
        self.expires
            .get()
            .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// Whether the connection's certificate proves a broker of the cluster (common name
    /// `keel-broker-ID`, signed by the CA): it acts for the cluster, allowed everything as
    /// Kafka's broker principals are (super users).
    pub fn is_broker(&self) -> bool {
        self.certificate
            .as_ref()
            .is_some_and(|c| c.broker.is_some())
    }

    /// Holds the connection's next read for `pause` from now (or longer, if it is held
    /// longer already).
    pub fn throttle(&self, pause: std::time::Duration) {
        let until = std::time::Instant::now() + pause;
        if self.throttled_until.get().is_none_or(|t| t < until) {
            self.throttled_until.set(Some(until));
        }
    }

    /// How long the connection's next read waits, if it is throttled.
    pub fn throttled_for(&self) -> Option<std::time::Duration> {
        let until = self.throttled_until.take()?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Whether this connection may do `operation` on `name` of `resource_type`: never
    /// before it authenticated, always when the authorizer is off.
    pub fn may(
        &self,
        acls: &acls::Acls,
        operation: keel_auth::acl::Operation,
        resource_type: keel_auth::acl::ResourceType,
        name: &str,
    ) -> bool {
        // Without an authorizer every request passes: no principal is looked up (this is on
        // every request's path).
        if !acls.enabled() {
            return self.authenticated();
        }
        if self.is_broker() {
            return true;
        }
        self.principal()
            .is_some_and(|p| acls.allows(&p.0, &self.host, operation, resource_type, name))
    }

    /// Whether this connection may do `operation` on some resource of `resource_type`.
    pub fn may_any(
        &self,
        acls: &acls::Acls,
        operation: keel_auth::acl::Operation,
        resource_type: keel_auth::acl::ResourceType,
    ) -> bool {
        if !acls.enabled() {
            return self.authenticated();
        }
        if self.is_broker() {
            return true;
        }
        self.principal()
            .is_some_and(|p| acls.allows_any(&p.0, &self.host, operation, resource_type))
    }
}

/// Random bytes from the operating system (nonces, salts).
///
/// # Panics
/// When the kernel has no randomness to give (getrandom(2) failing is not recoverable for
/// authentication).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).expect("the kernel's random source");
    out
}
