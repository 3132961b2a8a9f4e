use super::*;
use proptest::prelude::*;

const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

fn pencil(hash: Hash) -> ScramCredential {
    ScramCredential::new(hash, "pencil", &B64.decode(SALT).unwrap(), 4096).unwrap()
}

fn lookup_user(hash: Hash) -> impl Fn(&str) -> Option<ScramCredential> {
    move |user: &str| (user == "user").then(|| pencil(hash))
}

/// RFC 7677 §3: the SCRAM-SHA-256 exchange, byte for byte on both sides.
#[test]
fn the_rfc_7677_exchange_byte_for_byte() {
    let mut client = ScramClient::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let mut server = ScramServer::new(Hash::Sha256);
    let server_first = server
        .client_first(
            &client.first(),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            lookup_user(Hash::Sha256),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(server_first.clone()).unwrap(),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let client_final = client.reply(&server_first).unwrap();
    assert_eq!(
        String::from_utf8(client_final.clone()).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    let (user, server_final) = server.client_final(&client_final).unwrap();
    assert_eq!(user, "user");
    assert_eq!(
        String::from_utf8(server_final.clone()).unwrap(),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    client.verify(&server_final).unwrap();
}

fn exchange(hash: Hash, password: &str) -> Result<String, AuthError> {
    let mut client = ScramClient::new(hash, "user", password, "clientnonce");
    let mut server = ScramServer::new(hash);
    let first = server.client_first(&client.first(), "servernonce", lookup_user(hash))?;
    let (user, last) = server.client_final(&client.reply(&first)?)?;
    client.verify(&last)?;
    Ok(user)
}

#[test]
fn sha_512_authenticates_the_right_password_only() {
    assert_eq!(exchange(Hash::Sha512, "pencil").unwrap(), "user");
    assert_eq!(
        exchange(Hash::Sha512, "pen"),
        Err(AuthError::BadCredentials)
    );
    assert_eq!(
        exchange(Hash::Sha256, "Pencil"),
        Err(AuthError::BadCredentials)
    );
}

#[test]
fn unknown_users_and_credentials_of_the_other_hash_are_refused() {
    let mut server = ScramServer::new(Hash::Sha512);
    let only_256 = |_: &str| Some(pencil(Hash::Sha256));
    assert_eq!(
        server.client_first(b"n,,n=user,r=abc", "x", only_256),
        Err(AuthError::UnknownUser)
    );
    let mut server = ScramServer::new(Hash::Sha256);
    assert_eq!(
        server.client_first(b"n,,n=nobody,r=abc", "x", lookup_user(Hash::Sha256)),
        Err(AuthError::UnknownUser)
    );
    // The exchange is over after a failure.
    assert_eq!(
        server.client_final(b"c=biws,r=abcx,p=AA=="),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn a_final_message_must_carry_the_first_messages_nonce_and_header() {
    let hash = Hash::Sha256;
    let start = |client: &ScramClient| {
        let mut server = ScramServer::new(hash);
        let first = server
            .client_first(&client.first(), "srv", lookup_user(hash))
            .unwrap();
        (server, first)
    };
    let mut client = ScramClient::new(hash, "user", "pencil", "cli");
    let (mut server, first) = start(&client);
    let good = String::from_utf8(client.reply(&first).unwrap()).unwrap();
    let other_nonce = good.replace("r=clisrv", "r=clisrX");
    assert!(matches!(
        server.client_final(other_nonce.as_bytes()),
        Err(AuthError::Refused(_))
    ));
    let (mut server, _) = start(&client);
    let other_binding = good.replace("c=biws", "c=eSws");
    assert!(matches!(
        server.client_final(other_binding.as_bytes()),
        Err(AuthError::Refused(_))
    ));
    let (mut server, _) = start(&client);
    assert!(server.client_final(good.as_bytes()).is_ok());
    assert_eq!(
        server.client_final(good.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn first_messages_the_server_refuses() {
    let refuse = |message: &str| {
        ScramServer::new(Hash::Sha256)
            .client_first(message.as_bytes(), "s", |_| Some(pencil(Hash::Sha256)))
            .unwrap_err()
    };
    assert_eq!(
        refuse("p=tls-unique,,n=user,r=a"),
        AuthError::Refused("channel binding")
    );
    assert_eq!(
        refuse("n,a=admin,n=user,r=a"),
        AuthError::Refused("authorization id other than the user")
    );
    assert_eq!(
        refuse("n,,m=ext,n=user,r=a"),
        AuthError::Refused("mandatory extension")
    );
    for malformed in [
        "",
        "n,,",
        "x,,n=user,r=a",
        "n,,n=user",
        "n,,r=a,n=user",
        "n,,n=,r=a",
        "n,,n=us=er,r=a",
        "n,,n=user,r=a b",
    ] {
        assert!(
            matches!(refuse(malformed), AuthError::Malformed(_)),
            "{malformed:?}"
        );
    }
    let long = format!("n,,n=user,r={}", "a".repeat(MESSAGE_BYTES_MAX));
    assert!(matches!(refuse(&long), AuthError::Malformed(_)));
}

#[test]
fn escaped_user_names_and_a_matching_authorization_id() {
    let mut server = ScramServer::new(Hash::Sha256);
    let mut seen = String::new();
    server
        .client_first(b"n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abc", "s", |user| {
            seen = user.to_owned();
            Some(pencil(Hash::Sha256))
        })
        .unwrap();
    assert_eq!(seen, "a,b=c");
    let client = ScramClient::new(Hash::Sha256, "a,b=c", "p", "n");
    assert_eq!(client.first(), b"n,,n=a=2Cb=3Dc,r=n");
}

#[test]
fn a_client_refuses_a_hostile_or_lying_server() {
    let mut client = ScramClient::new(Hash::Sha256, "user", "pencil", "abc");
    let refused =
        |client: &mut ScramClient, first: &str| client.reply(first.as_bytes()).unwrap_err();
    assert!(matches!(
        refused(&mut client, "r=xyz123,s=c2FsdA==,i=4096"),
        AuthError::Refused(_)
    ));
    assert!(matches!(
        refused(&mut client, "r=abc,s=c2FsdA==,i=4096"),
        AuthError::Refused(_)
    ));
    assert!(matches!(
        refused(&mut client, "r=abcd,s=c2FsdA==,i=100000000"),
        AuthError::Refused(_)
    ));
    assert!(matches!(
        refused(&mut client, "r=abcd,s=c2FsdA==,i=1"),
        AuthError::Refused(_)
    ));
    assert_eq!(client.verify(b"v=AAAA"), Err(AuthError::OutOfOrder));
    client.reply(b"r=abcd,s=c2FsdA==,i=4096").unwrap();
    assert_eq!(client.verify(b"v=AAAA"), Err(AuthError::BadServerSignature));
    assert_eq!(
        client.verify(b"e=invalid-proof"),
        Err(AuthError::BadCredentials)
    );
}

#[test]
fn credentials_refuse_iteration_counts_out_of_range_and_match_their_password() {
    assert!(ScramCredential::new(Hash::Sha512, "p", b"s", 4095).is_err());
    assert!(ScramCredential::new(Hash::Sha512, "p", b"s", 16_385).is_err());
    assert!(ScramCredential::new(Hash::Sha512, "p", b"", 4096).is_err());
    let credential = ScramCredential::new(Hash::Sha512, "p", b"s", 4096).unwrap();
    assert!(credential.matches_password("p"));
    assert!(!credential.matches_password("q"));
    assert!(!format!("{credential:?}").contains("stored_key"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bytes_from_a_peer_are_an_error_or_a_step_never_a_panic(
        first in proptest::collection::vec(any::<u8>(), 0..200),
        last in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut server = ScramServer::new(Hash::Sha256);
        let _ = server.client_first(&first, "s", |_| Some(pencil(Hash::Sha256)));
        let _ = server.client_final(&last);
        let mut client = ScramClient::new(Hash::Sha256, "user", "pencil", "abc");
        let _ = client.reply(&first);
        let _ = client.verify(&last);
    }

    #[test]
    fn any_user_and_password_round_trip(user in "[^\\x00]{1,20}", password in ".{1,20}") {
        let credential = ScramCredential::new(Hash::Sha256, &password, b"salt", 4096).unwrap();
        let mut client = ScramClient::new(Hash::Sha256, &user, &password, "cn");
        let mut server = ScramServer::new(Hash::Sha256);
        let first = server.client_first(&client.first(), "sn", |_| Some(credential.clone())).unwrap();
        let (named, last) = server.client_final(&client.reply(&first).unwrap()).unwrap();
        prop_assert_eq!(named, user);
        prop_assert!(client.verify(&last).is_ok());
    }
}
