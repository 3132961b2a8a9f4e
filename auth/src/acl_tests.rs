use super::*;
use Operation::*;
use ResourceType::*;

fn bind(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        name: name.into(),
        pattern,
        principal: principal.into(),
        host: WILDCARD.into(),
        operation,
        permission,
    }
}

fn allow(
    t: ResourceType,
    name: &str,
    pattern: PatternType,
    who: &str,
    op: Operation,
) -> AclBinding {
    bind(t, name, pattern, who, op, Permission::Allow)
}

#[test]
fn a_prefixed_read_allows_reading_and_describing_those_topics_only() {
    let acls = Authorizer::new(
        [allow(
            Topic,
            "orders.",
            PatternType::Prefixed,
            "User:alice",
            Read,
        )],
        vec![],
    );
    let may = |op, t, name: &str| acls.allows("User:alice", "10.0.0.1", op, t, name);
    assert!(may(Read, Topic, "orders.eu"));
    assert!(may(Describe, Topic, "orders.eu"), "READ implies DESCRIBE");
    assert!(!may(Write, Topic, "orders.eu"));
    assert!(!may(Read, Topic, "payments"));
    assert!(!may(Read, Topic, "orders"), "the prefix is `orders.`");
    assert!(!may(Read, Group, "orders.eu"));
    assert!(!acls.allows("User:bob", "h", Read, Topic, "orders.eu"));
    assert!(!may(DescribeConfigs, Topic, "orders.eu"));
}

#[test]
fn deny_beats_allow_and_all_covers_every_operation() {
    let acls = Authorizer::new(
        [
            allow(Topic, WILDCARD, PatternType::Literal, "User:*", All),
            bind(
                Topic,
                "secret",
                PatternType::Literal,
                "User:bob",
                Read,
                Permission::Deny,
            ),
        ],
        vec![],
    );
    assert!(acls.allows("User:bob", "h", Write, Topic, "secret"));
    assert!(!acls.allows("User:bob", "h", Read, Topic, "secret"));
    assert!(acls.allows("User:alice", "h", Read, Topic, "secret"));
    assert!(acls.allows("User:bob", "h", Read, Topic, "public"));
    let mut denied_all = acls.clone();
    denied_all.add(bind(
        Topic,
        "sec",
        PatternType::Prefixed,
        "User:*",
        All,
        Permission::Deny,
    ));
    assert!(!denied_all.allows("User:alice", "h", Describe, Topic, "secret"));
}

#[test]
fn implications_are_kafkas() {
    for (granted, wanted, implied) in [
        (Read, Describe, true),
        (Write, Describe, true),
        (Delete, Describe, true),
        (Alter, Describe, true),
        (AlterConfigs, DescribeConfigs, true),
        (Create, Describe, false),
        (Describe, Read, false),
        (DescribeConfigs, AlterConfigs, false),
        (Write, Read, false),
    ] {
        let acls = Authorizer::new(
            [allow(Topic, "t", PatternType::Literal, "User:a", granted)],
            vec![],
        );
        assert_eq!(
            acls.allows("User:a", "h", wanted, Topic, "t"),
            implied,
            "{granted:?} → {wanted:?}"
        );
    }
    // A DENY of READ does not deny DESCRIBE.
    let acls = Authorizer::new(
        [
            allow(Topic, "t", PatternType::Literal, "User:a", Describe),
            bind(
                Topic,
                "t",
                PatternType::Literal,
                "User:a",
                Read,
                Permission::Deny,
            ),
        ],
        vec![],
    );
    assert!(acls.allows("User:a", "h", Describe, Topic, "t"));
}

#[test]
fn hosts_super_users_and_resources_without_acls() {
    let mut acls = Authorizer::new(
        [AclBinding {
            host: "10.0.0.1".into(),
            ..allow(Group, "g", PatternType::Literal, "User:a", Read)
        }],
        vec!["User:admin".into()],
    );
    assert!(acls.allows("User:a", "10.0.0.1", Read, Group, "g"));
    assert!(!acls.allows("User:a", "10.0.0.2", Read, Group, "g"));
    assert!(acls.allows("User:admin", "any", Alter, Cluster, CLUSTER_NAME));
    assert!(!acls.allows("User:a", "10.0.0.1", Read, Topic, "no-acl"));
    acls.allow_if_no_acl = true;
    assert!(acls.allows("User:a", "10.0.0.1", Read, Topic, "no-acl"));
    assert!(
        !acls.allows("User:a", "10.0.0.2", Read, Group, "g"),
        "an ACL selects g"
    );
}

#[test]
fn some_resource_of_a_type() {
    let acls = Authorizer::new(
        [allow(Topic, "t", PatternType::Literal, "User:a", Write)],
        vec![],
    );
    assert!(acls.allows_any("User:a", "h", Write, Topic));
    assert!(!acls.allows_any("User:b", "h", Write, Topic));
    let mut denied = acls.clone();
    denied.add(bind(
        Topic,
        WILDCARD,
        PatternType::Literal,
        "User:a",
        Write,
        Permission::Deny,
    ));
    assert!(!denied.allows_any("User:a", "h", Write, Topic));
}

#[test]
fn filters_select_and_remove_bindings() {
    let a = allow(Topic, "orders.", PatternType::Prefixed, "User:a", Read);
    let b = allow(Topic, "orders.eu", PatternType::Literal, "User:b", Write);
    let c = allow(Group, "g", PatternType::Literal, "User:a", Read);
    let mut acls = Authorizer::new([a.clone(), b.clone(), c.clone()], vec![]);
    let select = |filter: AclFilter| {
        acls.bindings()
            .filter(|x| filter.matches(x))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(select(AclFilter::default()).len(), 3);
    let by_principal = AclFilter {
        principal: Some("User:a".into()),
        ..Default::default()
    };
    assert_eq!(select(by_principal.clone()), [a.clone(), c.clone()]);
    let matching = AclFilter {
        resource_type: Some(Topic),
        name: Some("orders.eu".into()),
        pattern: Some(PatternType::Match),
        ..Default::default()
    };
    assert_eq!(
        select(matching).len(),
        2,
        "the prefix and the literal both select orders.eu"
    );
    let literal = AclFilter {
        name: Some("orders.".into()),
        pattern: Some(PatternType::Literal),
        ..Default::default()
    };
    assert!(select(literal).is_empty(), "orders. is a prefixed binding");
    assert_eq!(acls.remove(&by_principal), [a, c]);
    assert_eq!(acls.bindings().cloned().collect::<Vec<_>>(), [b]);
}

#[test]
fn names_and_codes_round_trip_and_bindings_are_checked() {
    for op in [
        Operation::Any,
        All,
        Read,
        Write,
        Create,
        Delete,
        Alter,
        Describe,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
        CreateTokens,
        DescribeTokens,
    ] {
        assert_eq!(Operation::from_code(op as i8), Some(op));
        assert_eq!(Operation::parse(&op.name().to_lowercase()), Some(op));
    }
    assert_eq!(
        ResourceType::parse("transactional-id"),
        Some(TransactionalId)
    );
    assert_eq!(Operation::from_code(0), None);
    let good = allow(Topic, "t", PatternType::Literal, "User:a", Read);
    assert_eq!(good.invalid(), None);
    for bad in [
        AclBinding {
            operation: Operation::Any,
            ..good.clone()
        },
        AclBinding {
            pattern: PatternType::Match,
            ..good.clone()
        },
        AclBinding {
            principal: "alice".into(),
            ..good.clone()
        },
        AclBinding {
            principal: "User:".into(),
            ..good.clone()
        },
        AclBinding {
            name: String::new(),
            ..good.clone()
        },
        AclBinding {
            resource_type: Cluster,
            name: "c".into(),
            ..good.clone()
        },
    ] {
        assert!(bad.invalid().is_some(), "{bad:?}");
    }
}
