use crate::api::secret_store::ClusterStoreCondition;
use crate::cache::namespaces::with_name_label;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::api::secret_store::{AwsTag, ServiceAccountSelector};

fn store(controller: Option<&str>) -> ResolvedStore {
    ResolvedStore::new(
        StoreKind::ClusterSecretStore,
        "s",
        StoreSpec {
            controller: controller.map(Into::into),
            ..Default::default()
        },
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn controller_class_selects_stores() {
    assert!(store(None).is_served_by(None));
    assert!(store(Some("")).is_served_by(None));
    assert!(!store(Some("blue")).is_served_by(None));
    assert!(store(Some("blue")).is_served_by(Some("blue")));
    assert!(!store(None).is_served_by(Some("blue")));
    assert!(!store(Some("green")).is_served_by(Some("blue")));
}

#[test]
fn other_providers_are_unsupported() {
    let mut s = store(None);
    s.spec
        .provider
        .other
        .insert("vault".into(), serde_json::json!({}));
    assert_eq!(
        s.aws().unwrap_err().to_string(),
        "unsupported field: ClusterSecretStore \"s\": spec.provider.vault (only aws is served)"
    );
}

#[test]
fn conditions_allow_by_name_regex_or_selector() {
    let conditions = NamespaceConditions::parse(&[
        ClusterStoreCondition {
            namespaces: vec!["team-a".into()],
            ..Default::default()
        },
        ClusterStoreCondition {
            namespace_regexes: vec!["^ci-[0-9]+$".into(), "prod".into()],
            ..Default::default()
        },
        ClusterStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "In".into(),
                    values: Some(vec!["blue".into()]),
                }]),
                match_labels: None,
            }),
            ..Default::default()
        },
    ])
    .unwrap();
    assert!(conditions.allows_by_name("team-a"));
    assert!(!conditions.allows_by_name("team-ab"), "names match exactly");
    assert!(conditions.allows_by_name("ci-42"));
    assert!(!conditions.allows_by_name("ci-42x"));
    // Unanchored, as Go's regexp.MatchString.
    assert!(conditions.allows_by_name("my-prod-ns"));
    assert!(conditions.has_selectors());
    assert!(conditions.allows_by_labels(&labels(&[("team", "blue")])));
    assert!(!conditions.allows_by_labels(&labels(&[("team", "red")])));
    assert!(!conditions.allows_by_labels(&labels(&[])));
}

#[test]
fn name_label_lets_selectors_match_names_on_old_apiservers() {
    let conditions = NamespaceConditions::parse(&[ClusterStoreCondition {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(labels(&[("kubernetes.io/metadata.name", "apps")])),
            match_expressions: None,
        }),
        ..Default::default()
    }])
    .unwrap();
    assert!(conditions.allows_by_labels(&with_name_label(BTreeMap::new(), "apps")));
    assert!(!conditions.allows_by_labels(&with_name_label(BTreeMap::new(), "other")));
}

#[test]
fn invalid_conditions_say_where() {
    let error = NamespaceConditions::parse(&[
        ClusterStoreCondition::default(),
        ClusterStoreCondition {
            namespace_regexes: vec!["(".into()],
            ..Default::default()
        },
    ])
    .unwrap_err();
    assert_eq!(
        error,
        "spec.conditions[1].namespaceRegexes[0] \"(\" is not a valid regular expression: unclosed group"
    );
    let error = NamespaceConditions::parse(&[ClusterStoreCondition {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
            match_labels: None,
        }),
        ..Default::default()
    }])
    .unwrap_err();
    assert!(
        error.starts_with("spec.conditions[0].namespaceSelector"),
        "{error}"
    );
}

#[tokio::test]
async fn stores_without_conditions_or_namespaced_allow_every_namespace() {
    // No API call is made on these paths, so a client that reaches nothing is enough.
    let client = unreachable_client();
    let mut s = store(None);
    s.check_namespace_allowed(&client, "anywhere")
        .await
        .unwrap();
    s.kind = StoreKind::SecretStore;
    s.spec.conditions = vec![ClusterStoreCondition {
        namespaces: vec!["x".into()],
        ..Default::default()
    }];
    s.check_namespace_allowed(&client, "anywhere")
        .await
        .unwrap();
}

#[tokio::test]
async fn cluster_store_refuses_other_namespaces_with_esos_message() {
    let client = unreachable_client();
    let mut s = store(None);
    s.spec.conditions = vec![ClusterStoreCondition {
        namespaces: vec!["x".into()],
        namespace_regexes: vec!["^x-".into()],
        ..Default::default()
    }];
    s.check_namespace_allowed(&client, "x").await.unwrap();
    s.check_namespace_allowed(&client, "x-1").await.unwrap();
    assert_eq!(
        s.check_namespace_allowed(&client, "y")
            .await
            .unwrap_err()
            .to_string(),
        "using cluster store \"s\" is not allowed from namespace \"y\": denied by spec.condition"
    );
}

#[tokio::test]
async fn secret_store_never_reads_another_namespace() {
    let client = unreachable_client();
    let mut s = store(None);
    s.kind = StoreKind::SecretStore;
    s.spec.provider.aws = Some(AwsProvider {
        service: "SecretsManager".into(),
        region: "eu-west-1".into(),
        auth: Some(AwsAuth {
            secret_ref: Some(AwsSecretRefAuth {
                access_key_id_secret_ref: SecretKeySelector {
                    name: "keys".into(),
                    key: "id".into(),
                    namespace: Some("other".into()),
                },
                ..Default::default()
            }),
            jwt: None,
        }),
        ..Default::default()
    });
    let error = s.auth_in(&client, "mine").await.unwrap_err().to_string();
    assert_eq!(
        error,
        "SecretStore \"s\": spec.provider.aws.auth.secretRef.accessKeyIDSecretRef.namespace \"other\": namespace should either be empty or match the namespace of the SecretStore for a namespaced SecretStore"
    );
    s.spec.provider.aws.as_mut().unwrap().auth = Some(AwsAuth {
        secret_ref: None,
        jwt: Some(AwsJwtAuth {
            service_account_ref: Some(ServiceAccountSelector {
                name: "reader".into(),
                namespace: Some("other".into()),
                audiences: vec![],
            }),
        }),
    });
    let error = s.auth_in(&client, "mine").await.unwrap_err().to_string();
    assert!(
        error.contains("serviceAccountRef.namespace \"other\": namespace should either be empty"),
        "{error}"
    );
}

#[tokio::test]
async fn namespaced_stores_may_be_refused_the_controllers_own_identity() {
    let client = unreachable_client();
    let mut s = store(None);
    s.kind = StoreKind::SecretStore;
    s.spec.provider.aws = Some(AwsProvider {
        service: "SecretsManager".into(),
        region: "eu-west-1".into(),
        role: Some("arn:aws:iam::1:role/anything".into()),
        ..Default::default()
    });
    // As ESO by default: no auth means the controller's own credentials.
    let allowed = s.clone().auth_in(&client, "mine").await.unwrap();
    assert!(matches!(allowed.base, BaseCredentials::DefaultChain));
    let refused = s.clone().allowing_ambient_credentials(false);
    let error = refused.auth_in(&client, "mine").await.unwrap_err();
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains(
            "spec.provider.aws.auth is required: this controller does not lend its own AWS identity"
        ),
        "{error}"
    );
    // A ClusterSecretStore, made by a cluster admin, still may.
    let mut cluster = s.allowing_ambient_credentials(false);
    cluster.kind = StoreKind::ClusterSecretStore;
    assert!(cluster.auth_in(&client, "mine").await.is_ok());
}

fn aws_provider() -> AwsProvider {
    AwsProvider {
        service: "SecretsManager".into(),
        region: "eu-west-1".into(),
        role: Some("arn:aws:iam::1:role/main".into()),
        additional_roles: vec![
            "arn:aws:iam::1:role/first".into(),
            String::new(),
            "arn:aws:iam::1:role/second".into(),
        ],
        external_id: Some("ext-1".into()),
        session_tags: vec![AwsTag {
            key: "team".into(),
            value: "blue".into(),
        }],
        transitive_tag_keys: vec!["team".into()],
        ..Default::default()
    }
}

#[test]
fn role_chain_follows_esos_order() {
    let roles = role_chain(&aws_provider(), StoreKind::SecretStore, "s", "ns").unwrap();
    let arns: Vec<_> = roles.iter().map(|r| r.role_arn.as_str()).collect();
    assert_eq!(
        arns,
        [
            "arn:aws:iam::1:role/first",
            "arn:aws:iam::1:role/second",
            "arn:aws:iam::1:role/main"
        ]
    );
    // Only `role` carries the external ID and the session tags.
    for hop in &roles[..2] {
        assert_eq!(hop.external_id, None);
        assert!(hop.session_tags.is_empty() && hop.transitive_tag_keys.is_empty());
    }
    let main = &roles[2];
    assert_eq!(main.external_id.as_deref(), Some("ext-1"));
    assert_eq!(
        main.session_tags,
        [("team".to_string(), "blue".to_string())]
    );
    assert_eq!(main.transitive_tag_keys, ["team"]);
}

#[test]
fn no_role_means_no_chain() {
    let mut aws = aws_provider();
    aws.role = None;
    aws.additional_roles.clear();
    assert!(
        role_chain(&aws, StoreKind::SecretStore, "s", "ns")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn session_tags_policies_tag_the_session_as_eso() {
    let mut aws = aws_provider();
    aws.session_tags_policy = Some("Custom".into());
    aws.custom_session_tags = [("cost".to_string(), "42".to_string())].into();
    let roles = role_chain(&aws, StoreKind::ClusterSecretStore, "shared", "apps").unwrap();
    let tags: BTreeMap<_, _> = roles[2].session_tags.iter().cloned().collect();
    assert_eq!(
        tags,
        labels(&[
            ("cost", "42"),
            ("esoNamespace", "apps"),
            ("esoStoreKind", "ClusterSecretStore"),
            ("esoStoreName", "shared"),
        ])
    );
    aws.session_tags_policy = Some("Simple".into());
    let roles = role_chain(&aws, StoreKind::ClusterSecretStore, "shared", "apps").unwrap();
    assert_eq!(roles[2].session_tags.len(), 3);
    aws.session_tags_policy = Some("Loose".into());
    assert!(role_chain(&aws, StoreKind::SecretStore, "s", "ns").is_err());
}

#[test]
fn referent_auth_is_a_cluster_store_without_namespaces() {
    let mut s = store(None);
    let mut aws = aws_provider();
    aws.auth = Some(AwsAuth {
        secret_ref: None,
        jwt: Some(AwsJwtAuth {
            service_account_ref: Some(ServiceAccountSelector {
                name: "reader".into(),
                namespace: None,
                audiences: vec![],
            }),
        }),
    });
    s.spec.provider.aws = Some(aws.clone());
    assert!(s.is_referent());
    aws.auth
        .as_mut()
        .unwrap()
        .jwt
        .as_mut()
        .unwrap()
        .service_account_ref
        .as_mut()
        .unwrap()
        .namespace = Some("infra".into());
    s.spec.provider.aws = Some(aws);
    assert!(!s.is_referent());
    s.kind = StoreKind::SecretStore;
    assert!(!s.is_referent());
}

/// A client for code paths that must not call the API: any call fails fast.
fn unreachable_client() -> Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    Client::try_from(config).unwrap()
}
