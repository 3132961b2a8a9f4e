//! PLAIN (RFC 4616): `authzid NUL authcid NUL password` in one message, checked against
//! the user's stored SCRAM credential, so the broker keeps no password.

use crate::{AuthError, ScramCredential};

/// Checks a PLAIN message: the user authenticated, when `lookup` finds a credential of
/// theirs whose password is the one sent. An authorization id, if any, must be the user.
///
/// # Errors
/// A malformed message, an authorization id other than the user, an unknown user, or a
/// wrong password.
pub fn authenticate(
    message: &[u8],
    lookup: impl FnOnce(&str) -> Option<ScramCredential>,
) -> Result<String, AuthError> {
    if message.len() > crate::scram::MESSAGE_BYTES_MAX {
        return Err(AuthError::Malformed("message too long"));
    }
    let text = std::str::from_utf8(message).map_err(|_| AuthError::Malformed("PLAIN message"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("PLAIN message"));
    };
    if user.is_empty() || password.is_empty() {
        return Err(AuthError::Malformed("PLAIN message"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::Refused("authorization id other than the user"));
    }
    let credential = lookup(user).ok_or(AuthError::UnknownUser)?;
    if credential.matches_password(password) {
        Ok(user.to_owned())
    } else {
        Err(AuthError::BadCredentials)
    }
}

/// The PLAIN message a client sends.
pub fn message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::Hash;

    fn lookup(user: &str) -> Option<ScramCredential> {
        (user == "alice")
            .then(|| ScramCredential::new(Hash::Sha256, "secret", b"salt", 4096).unwrap())
    }

    #[test]
    fn the_right_password_authenticates_and_nothing_else_does() {
        assert_eq!(
            authenticate(&message("alice", "secret"), lookup).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(&message("alice", "Secret"), lookup),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            authenticate(&message("bob", "secret"), lookup),
            Err(AuthError::UnknownUser)
        );
        assert_eq!(
            authenticate(b"bob\0alice\0secret", lookup),
            Err(AuthError::Refused("authorization id other than the user"))
        );
        assert_eq!(
            authenticate(b"alice\0alice\0secret", lookup).unwrap(),
            "alice"
        );
        for bad in [
            &b"alice\0secret"[..],
            b"\0alice\0secret\0x",
            b"\0\0secret",
            b"\0alice\0",
            b"\xff\0a\0b",
        ] {
            assert!(
                matches!(authenticate(bad, lookup), Err(AuthError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
