//! The users a broker authenticates: their SCRAM credentials (salt, iterations, stored and
//! server keys; never a password), in `users.toml` in the data directory, replaced
//! durably on every change.

use super::durable::Durable;
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use keel_auth::{Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Iterations of a credential made by this broker (Kafka's default for SCRAM credentials).
pub const ITERATIONS: u32 = 4096;

/// One credential as written in `users.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    /// User → mechanism name → credential.
    #[serde(default)]
    users: BTreeMap<String, BTreeMap<String, Stored>>,
}

type Credentials = BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>;

/// The users, shared by every shard (read at each authentication).
#[derive(Debug)]
pub struct Users(Durable<Credentials>);

impl Users {
    /// Loads `users.toml` from `data_dir` (no users when absent).
    ///
    /// # Errors
    /// An unreadable or malformed file, named.
    pub fn load(data_dir: &Path) -> anyhow::Result<Users> {
        let decode = |text: Option<&str>| text.map_or_else(|| Ok(Credentials::new()), decode);
        Durable::load(data_dir.join("users.toml"), decode, encode).map(Users)
    }

    /// No users yet: a cluster's come from its metadata log ([`Users::replace_from`]).
    pub fn in_metadata() -> Users {
        Users(Durable::in_metadata(Credentials::new(), encode))
    }

    /// Whether users are kept in `users.toml` (a single node) rather than the metadata log.
    pub fn in_file(&self) -> bool {
        self.0.in_file()
    }

    /// The metadata entry of `user`'s credential for `mechanism` (`None`: removed): keyed
    /// `MECHANISM USER`, the value `users.toml`'s text for that one credential.
    ///
    /// # Errors
    /// The credential cannot be encoded.
    pub fn entry(
        user: &str,
        mechanism: Mechanism,
        credential: Option<&ScramCredential>,
    ) -> anyhow::Result<keel_controller::records::SecurityEntry> {
        let value = match credential {
            Some(c) => {
                let mut one = Credentials::new();
                one.entry(user.to_owned())
                    .or_default()
                    .insert(mechanism, c.clone());
                Some(encode(&one)?)
            }
            None => None,
        };
        Ok(keel_controller::records::SecurityEntry {
            kind: super::KIND_USER,
            key: format!("{mechanism} {user}"),
            value,
        })
    }

    /// Makes the users those of the metadata entries' `values`.
    ///
    /// # Errors
    /// A value that is not a credential (nothing changes then).
    pub fn replace_from<'a>(&self, values: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
        let mut all = Credentials::new();
        for value in values {
            for (user, by) in decode(value)? {
                all.entry(user).or_default().extend(by);
            }
        }
        self.0.replace(all);
        Ok(())
    }

    /// `user`'s credential for `mechanism` (a SCRAM one).
    pub fn lookup(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.read().get(user)?.get(&mechanism).cloned()
    }

    /// Every user with the mechanisms and iteration counts of their credentials.
    pub fn list(&self) -> Vec<(String, Vec<(Mechanism, u32)>)> {
        self.read()
            .iter()
            .map(|(user, by)| {
                let mechanisms = by.iter().map(|(m, c)| (*m, c.iterations)).collect();
                (user.clone(), mechanisms)
            })
            .collect()
    }

    /// Makes `user` a credential for `mechanism` from `password` unless they have one
    /// already; whether it was made. Written durably before it is used.
    ///
    /// # Errors
    /// A mechanism that is not SCRAM, an empty user name, or the file cannot be written.
    pub fn create_if_absent(
        &self,
        user: &str,
        mechanism: Mechanism,
        password: &str,
    ) -> anyhow::Result<bool> {
        anyhow::ensure!(!user.is_empty(), "a user name is needed");
        let credential = new_credential(mechanism, password)?;
        if self.lookup(user, mechanism).is_some() {
            return Ok(false);
        }
        self.set(user, mechanism, credential)?;
        Ok(true)
    }

    /// Sets `user`'s credential for `mechanism`, written durably before it is used.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn set(
        &self,
        user: &str,
        mechanism: Mechanism,
        credential: ScramCredential,
    ) -> anyhow::Result<()> {
        self.change(|users| {
            users
                .entry(user.to_owned())
                .or_default()
                .insert(mechanism, credential);
        })
    }

    /// Removes `user`'s credential for `mechanism`; whether there was one.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn delete(&self, user: &str, mechanism: Mechanism) -> anyhow::Result<bool> {
        if self.lookup(user, mechanism).is_none() {
            return Ok(false);
        }
        self.change(|users| {
            if let Some(by) = users.get_mut(user) {
                by.remove(&mechanism);
                if by.is_empty() {
                    users.remove(user);
                }
            }
        })?;
        Ok(true)
    }

    fn change(&self, change: impl FnOnce(&mut Credentials)) -> anyhow::Result<()> {
        self.0.change(change)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Credentials> {
        self.0.read()
    }
}

/// A fresh credential for `password`: a random 32-byte salt, [`ITERATIONS`] iterations.
///
/// # Errors
/// A mechanism that is not SCRAM.
pub fn new_credential(mechanism: Mechanism, password: &str) -> anyhow::Result<ScramCredential> {
    let hash = mechanism
        .scram()
        .with_context(|| format!("{mechanism} credentials are not stored (SCRAM only)"))?;
    let salt = super::random_bytes::<32>();
    ScramCredential::new(hash, password, &salt, ITERATIONS).map_err(|e| anyhow::anyhow!("{e}"))
}

fn decode(text: &str) -> anyhow::Result<Credentials> {
    let file: UsersFile = toml::from_str(text)?;
    let mut out = Credentials::new();
    for (user, by) in file.users {
        for (name, stored) in by {
            let mechanism = Mechanism::parse(&name)
                .filter(|m| m.scram().is_some())
                .with_context(|| format!("user {user}: unknown mechanism {name:?}"))?;
            let bytes = |field: &str, value: &str| {
                B64.decode(value)
                    .with_context(|| format!("user {user}: {name} {field} is not base64"))
            };
            let credential = ScramCredential {
                hash: mechanism.scram().expect("filtered above"),
                salt: bytes("salt", &stored.salt)?,
                iterations: stored.iterations,
                stored_key: bytes("stored_key", &stored.stored_key)?,
                server_key: bytes("server_key", &stored.server_key)?,
            };
            out.entry(user.clone())
                .or_default()
                .insert(mechanism, credential);
        }
    }
    Ok(out)
}

fn encode(credentials: &Credentials) -> anyhow::Result<String> {
    let users = credentials
        .iter()
        .map(|(user, by)| {
            let by = by
                .iter()
                .map(|(mechanism, c)| {
                    let stored = Stored {
                        salt: B64.encode(&c.salt),
                        iterations: c.iterations,
                        stored_key: B64.encode(&c.stored_key),
                        server_key: B64.encode(&c.server_key),
                    };
                    (mechanism.name().to_owned(), stored)
                })
                .collect();
            (user.clone(), by)
        })
        .collect();
    toml::to_string(&UsersFile { users }).context("encoding users")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_a_reload_and_no_password_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::load(dir.path()).unwrap();
        assert!(users
            .create_if_absent("alice", Mechanism::ScramSha512, "hunter2")
            .unwrap());
        assert!(!users
            .create_if_absent("alice", Mechanism::ScramSha512, "other")
            .unwrap());
        assert!(users
            .create_if_absent("alice", Mechanism::ScramSha256, "hunter2")
            .unwrap());
        assert!(users
            .create_if_absent("PLAIN", Mechanism::Plain, "x")
            .is_err());
        let text = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        let again = Users::load(dir.path()).unwrap();
        let credential = again.lookup("alice", Mechanism::ScramSha512).unwrap();
        assert!(credential.matches_password("hunter2"));
        assert!(!credential.matches_password("other"));
        assert_eq!(
            again.list(),
            [(
                "alice".to_owned(),
                vec![
                    (Mechanism::ScramSha256, 4096),
                    (Mechanism::ScramSha512, 4096)
                ]
            )]
        );
        assert!(again.lookup("bob", Mechanism::ScramSha512).is_none());
    }

    #[test]
    fn a_malformed_users_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("users.toml"),
            "[users.a.MD5]\nsalt='x'\niterations=1\nstored_key=''\nserver_key=''\n",
        )
        .unwrap();
        let error = format!("{:#}", Users::load(dir.path()).unwrap_err());
        assert!(
            error.contains("users.toml") && error.contains("MD5"),
            "{error}"
        );
    }

    #[test]
    fn add_scram_values() {
        use crate::config::security::parse_add_scram;
        assert_eq!(
            parse_add_scram("SCRAM-SHA-512:alice:pa:ss").unwrap(),
            (Mechanism::ScramSha512, "alice".into(), "pa:ss".into())
        );
        for bad in [
            "SCRAM-SHA-512:alice",
            "PLAIN:a:b",
            "SCRAM-SHA-1:a:b",
            "SCRAM-SHA-256::p",
            "SCRAM-SHA-256:a:",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }
}
