//! The security APIs' requests: SASL, ACLs, SCRAM credentials, client quotas.

use super::*;

#[test]
fn sasl_handshake_and_authenticate_every_version() {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    for v in versions(ApiKey::SaslHandshake) {
        let request = SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512"));
        assert_eq!(
            round_trip(ApiKey::SaslHandshake, v, &request),
            KafkaRequest::SaslHandshake("SCRAM-SHA-512".into())
        );
    }
    for v in versions(ApiKey::SaslAuthenticate) {
        let request =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=u,r=x"));
        assert_eq!(
            round_trip(ApiKey::SaslAuthenticate, v, &request),
            KafkaRequest::SaslAuthenticate(Bytes::from_static(b"n,,n=u,r=x"))
        );
    }
}

#[test]
fn acl_requests_every_version() {
    use crate::requests::{AclCreation, AclFilterCodes};
    use kafka_protocol::messages::create_acls_request::AclCreation as Creation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
    let filter = AclFilterCodes {
        resource_type: 2,
        name: Some("orders.".into()),
        pattern: 4,
        principal: Some("User:alice".into()),
        host: None,
        operation: 3,
        permission: 3,
    };
    for v in versions(ApiKey::CreateAcls) {
        let request = CreateAclsRequest::default().with_creations(vec![Creation::default()
            .with_resource_type(2)
            .with_resource_name(s("orders."))
            .with_resource_pattern_type(4)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3)]);
        let KafkaRequest::CreateAcls(creations) = round_trip(ApiKey::CreateAcls, v, &request)
        else {
            panic!()
        };
        assert_eq!(
            creations,
            [AclCreation {
                resource_type: 2,
                name: "orders.".into(),
                pattern: 4,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: 3,
                permission: 3,
            }]
        );
    }
    for v in versions(ApiKey::DescribeAcls) {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s("orders.")))
            .with_pattern_type_filter(4)
            .with_principal_filter(Some(s("User:alice")))
            .with_host_filter(None)
            .with_operation(3)
            .with_permission_type(3);
        assert_eq!(
            round_trip(ApiKey::DescribeAcls, v, &request),
            KafkaRequest::DescribeAcls(filter.clone())
        );
    }
    for v in versions(ApiKey::DeleteAcls) {
        let request = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s("orders.")))
            .with_pattern_type_filter(4)
            .with_principal_filter(Some(s("User:alice")))
            .with_host_filter(None)
            .with_operation(3)
            .with_permission_type(3)]);
        assert_eq!(
            round_trip(ApiKey::DeleteAcls, v, &request),
            KafkaRequest::DeleteAcls(vec![filter.clone()])
        );
    }
}

#[test]
fn scram_credential_requests() {
    use crate::requests::{AlterScram, ScramUpsertion};
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use kafka_protocol::messages::{
        AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
    };
    let described = DescribeUserScramCredentialsRequest::default()
        .with_users(Some(vec![UserName::default().with_name(s("alice"))]));
    assert_eq!(
        round_trip(ApiKey::DescribeUserScramCredentials, 0, &described),
        KafkaRequest::DescribeUserScramCredentials(Some(vec!["alice".into()]))
    );
    let every = DescribeUserScramCredentialsRequest::default().with_users(None);
    assert_eq!(
        round_trip(ApiKey::DescribeUserScramCredentials, 0, &every),
        KafkaRequest::DescribeUserScramCredentials(None)
    );
    let alter = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![ScramCredentialDeletion::default()
            .with_name(s("bob"))
            .with_mechanism(1)])
        .with_upsertions(vec![ScramCredentialUpsertion::default()
            .with_name(s("alice"))
            .with_mechanism(2)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from_static(b"salted"))]);
    assert_eq!(
        round_trip(ApiKey::AlterUserScramCredentials, 0, &alter),
        KafkaRequest::AlterUserScramCredentials(AlterScram {
            deletions: vec![("bob".into(), 1)],
            upsertions: vec![ScramUpsertion {
                name: "alice".into(),
                mechanism: 2,
                iterations: 4096,
                salt: Bytes::from_static(b"salt"),
                salted_password: Bytes::from_static(b"salted"),
            }],
        })
    );
}

#[test]
fn client_quota_requests_every_version() {
    use crate::requests::{AlterQuotas, DescribeQuotas, QuotaAlteration, QuotaMatch};
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
    for v in versions(ApiKey::DescribeClientQuotas) {
        let request = DescribeClientQuotasRequest::default()
            .with_components(vec![ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(0)
                .with_match(Some(s("alice")))])
            .with_strict(true);
        assert_eq!(
            round_trip(ApiKey::DescribeClientQuotas, v, &request),
            KafkaRequest::DescribeClientQuotas(DescribeQuotas {
                components: vec![QuotaMatch {
                    entity_type: "user".into(),
                    match_type: 0,
                    name: Some("alice".into()),
                }],
                strict: true,
            })
        );
    }
    for v in versions(ApiKey::AlterClientQuotas) {
        let request = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(vec![
                EntityData::default()
                    .with_entity_type(s("user"))
                    .with_entity_name(Some(s("alice"))),
                EntityData::default()
                    .with_entity_type(s("client-id"))
                    .with_entity_name(None),
            ])
            .with_ops(vec![OpData::default()
                .with_key(s("producer_byte_rate"))
                .with_value(1024.0)
                .with_remove(false)])]);
        assert_eq!(
            round_trip(ApiKey::AlterClientQuotas, v, &request),
            KafkaRequest::AlterClientQuotas(AlterQuotas {
                entries: vec![QuotaAlteration {
                    entity: vec![
                        ("user".into(), Some("alice".into())),
                        ("client-id".into(), None)
                    ],
                    ops: vec![("producer_byte_rate".into(), 1024.0, false)],
                }],
                validate_only: false,
            })
        );
    }
}
