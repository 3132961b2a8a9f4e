//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677): a server that checks a client's
//! proof against a stored [`ScramCredential`], and a client. No channel binding (`n` or
//! `y` GS2 flags only, as Kafka); the authorization id, if any, must be the user.

use crate::{AuthError, ScramCredential, ITERATIONS_MAX, ITERATIONS_MIN};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The longest SCRAM message accepted (a first message names a user and a nonce; Kafka's
/// user names are short): longer ones are malformed, before any parsing.
pub const MESSAGE_BYTES_MAX: usize = 4096;

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hash {
    /// SHA-256 (SCRAM-SHA-256).
    Sha256,
    /// SHA-512 (SCRAM-SHA-512).
    Sha512,
}

impl Hash {
    /// The digest's length in bytes.
    pub fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }

    /// Always false: a digest has bytes (clippy's `len` companion).
    pub fn is_empty(self) -> bool {
        false
    }

    /// H(data).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with HMAC of this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        match self {
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// The server's side of one exchange: [`ScramServer::client_first`], then
/// [`ScramServer::client_final`].
#[derive(Debug)]
pub struct ScramServer {
    hash: Hash,
    state: ServerState,
}

#[derive(Debug)]
enum ServerState {
    First,
    Final(Box<Pending>),
    Done,
}

#[derive(Debug)]
struct Pending {
    user: String,
    gs2_header: String,
    nonce: String,
    /// client-first-message-bare "," server-first-message.
    auth_message_start: String,
    credential: ScramCredential,
}

impl ScramServer {
    /// A server exchange with `hash`.
    pub fn new(hash: Hash) -> ScramServer {
        ScramServer {
            hash,
            state: ServerState::First,
        }
    }

    /// The user the first message named, once it was accepted.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            ServerState::Final(pending) => Some(&pending.user),
            _ => None,
        }
    }

    /// The exchange's hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Takes the client's first message and answers with the server's first: the combined
    /// nonce (the client's then `server_nonce`, printable, no comma), the user's salt and
    /// iteration count. `lookup` finds the user's credential for this hash.
    ///
    /// # Errors
    /// A malformed message, channel binding asked for, an authorization id other than the
    /// user, or an unknown user (the exchange is then over).
    pub fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ServerState::First) {
            return Err(AuthError::OutOfOrder);
        }
        self.state = ServerState::Done;
        let first = ClientFirst::parse(message)?;
        let credential = lookup(&first.user)
            .filter(|c| c.hash == self.hash)
            .ok_or(AuthError::UnknownUser)?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.state = ServerState::Final(Box::new(Pending {
            user: first.user,
            gs2_header: first.gs2_header,
            nonce,
            auth_message_start: format!("{},{server_first}", first.bare),
            credential,
        }));
        Ok(server_first.into_bytes())
    }

    /// Takes the client's final message: on a valid proof, the user authenticated and the
    /// server's final message (its signature) to send.
    ///
    /// # Errors
    /// A malformed message, a changed nonce or GS2 header, or a proof that does not match.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let ServerState::Final(pending) = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let text = text(message)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("client-final-message"))?;
        let mut fields = without_proof.split(',');
        let binding = attribute(fields.next(), 'c')?;
        let nonce = attribute(fields.next(), 'r')?;
        if B64.decode(binding).ok().as_deref() != Some(pending.gs2_header.as_bytes()) {
            return Err(AuthError::Refused(
                "channel binding differs from the first message",
            ));
        }
        // Kafka's rule: the nonce must end with the one the server sent (librdkafka 2.0
        // sends the client's nonce twice; the proof covers what it sent, and the server's
        // fresh part still has to be there).
        if !nonce.ends_with(&pending.nonce) {
            return Err(AuthError::Refused("nonce differs from the server's"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| AuthError::Malformed("client proof"))?;
        let credential = &pending.credential;
        if proof.len() != self.hash.len() {
            return Err(AuthError::BadCredentials);
        }
        let auth_message = format!("{},{without_proof}", pending.auth_message_start);
        let signature = self
            .hash
            .hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.hash.digest(&client_key).ct_eq(&credential.stored_key)) {
            return Err(AuthError::BadCredentials);
        }
        let server_signature = self
            .hash
            .hmac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((pending.user, server_final.into_bytes()))
    }
}

/// A parsed client-first-message.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

impl ClientFirst {
    fn parse(message: &[u8]) -> Result<ClientFirst, AuthError> {
        let text = text(message)?;
        let mut parts = text.splitn(3, ',');
        let (flag, authzid) = (parts.next(), parts.next());
        let bare = parts.next().ok_or(AuthError::Malformed("gs2 header"))?;
        let flag = flag.unwrap_or_default();
        let authzid = authzid.unwrap_or_default();
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(AuthError::Refused("channel binding")),
            _ => return Err(AuthError::Malformed("gs2 flag")),
        }
        let mut fields = bare.split(',');
        if bare.starts_with("m=") {
            return Err(AuthError::Refused("mandatory extension"));
        }
        let user = unescape(attribute(fields.next(), 'n')?)?;
        let nonce = attribute(fields.next(), 'r')?;
        if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(AuthError::Malformed("client nonce"));
        }
        // Extensions (Kafka's `tokenauth`) may follow; none is acted on.
        if !authzid.is_empty() && unescape(attribute(Some(authzid), 'a')?)? != user {
            return Err(AuthError::Refused("authorization id other than the user"));
        }
        Ok(ClientFirst {
            gs2_header: format!("{flag},{authzid},"),
            bare: bare.to_owned(),
            user,
            nonce: nonce.to_owned(),
        })
    }
}

/// The client's side of one exchange: [`ScramClient::first`], [`ScramClient::reply`] to
/// the server's first message, then [`ScramClient::verify`] the server's final one.
#[derive(Debug)]
pub struct ScramClient {
    hash: Hash,
    password: String,
    nonce: String,
    bare: String,
    /// The server's key and the full auth message, once the final message is sent.
    expected: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client exchange for `user` with `password`, using `nonce` (printable ASCII
    /// without commas, from a random source).
    pub fn new(hash: Hash, user: &str, password: &str, nonce: &str) -> ScramClient {
        let bare = format!("n={},r={nonce}", escape(user));
        ScramClient {
            hash,
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            bare,
            expected: None,
        }
    }

    /// The client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// The client-final-message answering the server's first.
    ///
    /// # Errors
    /// A malformed server message, a nonce that does not extend the client's, or an
    /// iteration count out of range (a hostile server could make the client spin).
    pub fn reply(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let text = text(server_first)?;
        let mut fields = text.split(',');
        let nonce = attribute(fields.next(), 'r')?;
        let salt = B64
            .decode(attribute(fields.next(), 's')?)
            .map_err(|_| AuthError::Malformed("salt"))?;
        let iterations: u32 = attribute(fields.next(), 'i')?
            .parse()
            .map_err(|_| AuthError::Malformed("iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::Refused(
                "server nonce does not extend the client's",
            ));
        }
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) || salt.is_empty() {
            return Err(AuthError::Refused("iteration count out of range"));
        }
        let salted = self
            .hash
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.digest(&client_key);
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.expected = Some(self.hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: the server proved it holds the credential.
    ///
    /// # Errors
    /// An error the server sent (`e=…`), a malformed message, or a wrong signature.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let expected = self.expected.as_ref().ok_or(AuthError::OutOfOrder)?;
        let text = text(server_final)?;
        if text.starts_with("e=") {
            return Err(AuthError::BadCredentials);
        }
        let signature = B64
            .decode(attribute(text.split(',').next(), 'v')?)
            .map_err(|_| AuthError::Malformed("server signature"))?;
        if bool::from(signature.ct_eq(expected)) {
            Ok(())
        } else {
            Err(AuthError::BadServerSignature)
        }
    }
}

fn text(message: &[u8]) -> Result<&str, AuthError> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(AuthError::Malformed("message too long"));
    }
    std::str::from_utf8(message).map_err(|_| AuthError::Malformed("message not UTF-8"))
}

/// The value of `name=value`, when `field` is that attribute.
fn attribute(field: Option<&str>, name: char) -> Result<&str, AuthError> {
    field
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('='))
        .ok_or(AuthError::Malformed("attribute"))
}

/// A saslname: `=2C` is a comma, `=3D` an equals sign; any other `=` is malformed.
fn unescape(name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(AuthError::Malformed("user name escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(AuthError::Malformed("empty user name"));
    }
    Ok(out)
}

fn escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
