//! What a broker stores for a SCRAM user: never the password.

use crate::scram::Hash;
use crate::AuthError;
use subtle::ConstantTimeEq;

/// The fewest PBKDF2 iterations a credential may use (Kafka's minimum, RFC 7677's
/// recommendation).
pub const ITERATIONS_MIN: u32 = 4096;
/// The most PBKDF2 iterations a credential may use (Kafka's maximum): each authentication
/// costs the broker none, a client this many HMACs.
pub const ITERATIONS_MAX: u32 = 16_384;

/// A user's SCRAM credential for one hash: `StoredKey = H(HMAC(SaltedPassword, "Client
/// Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")` (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The hash the keys are made with.
    pub hash: Hash,
    /// The salt, random per credential.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations, within [`ITERATIONS_MIN`]..=[`ITERATIONS_MAX`].
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations`.
    ///
    /// # Errors
    /// [`AuthError::Refused`] when `iterations` is out of range or the salt is empty.
    pub fn new(
        hash: Hash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, AuthError> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(AuthError::Refused("iteration count out of range"));
        }
        if salt.is_empty() {
            return Err(AuthError::Refused("empty salt"));
        }
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        Ok(Self::from_salted(hash, salt, iterations, &salted))
    }

    /// The credential a client made: it salted the password itself (Kafka's
    /// AlterUserScramCredentials carries the salt, iterations and salted password).
    ///
    /// # Errors
    /// [`AuthError::Refused`] when `iterations` is out of range, the salt is empty, or the
    /// salted password is not one digest long.
    pub fn from_salted_password(
        hash: Hash,
        salt: &[u8],
        iterations: u32,
        salted: &[u8],
    ) -> Result<ScramCredential, AuthError> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(AuthError::Refused("iteration count out of range"));
        }
        if salt.is_empty() || salted.len() != hash.len() {
            return Err(AuthError::Refused(
                "a salt and a salted password of the hash's length",
            ));
        }
        Ok(Self::from_salted(hash, salt, iterations, salted))
    }

    pub(crate) fn from_salted(
        hash: Hash,
        salt: &[u8],
        iterations: u32,
        salted: &[u8],
    ) -> ScramCredential {
        let client_key = hash.hmac(salted, b"Client Key");
        ScramCredential {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from (what PLAIN checks),
    /// compared in constant time.
    pub fn matches_password(&self, password: &str) -> bool {
        let salted = self
            .hash
            .salted_password(password.as_bytes(), &self.salt, self.iterations);
        let candidate = Self::from_salted(self.hash, &self.salt, self.iterations, &salted);
        candidate.stored_key.ct_eq(&self.stored_key).into()
    }
}
