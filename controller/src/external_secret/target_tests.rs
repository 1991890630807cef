use super::*;
use crate::api::ExternalSecretSpec;
use crate::api::external_secret::{ExternalSecretTarget, TemplateMetadata, TemplateRefItem};

/// A stand-in for the Go template engine: replaces `{{ .key }}` with the value.
fn fake_render(
    _name: &str,
    text: &str,
    values: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, Error> {
    let mut out = text.to_owned();
    for (key, value) in values {
        out = out.replace(
            &format!("{{{{ .{key} }}}}"),
            std::str::from_utf8(value).unwrap(),
        );
    }
    Ok(out.into_bytes())
}

fn es(template: Option<ExternalSecretTemplate>) -> ExternalSecret {
    let mut es = ExternalSecret::new(
        "app",
        ExternalSecretSpec {
            target: Some(ExternalSecretTarget {
                template: template.map(Box::new),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    es.metadata.labels = Some([("team".to_owned(), "blue".to_owned())].into());
    es.metadata.annotations = Some([("note".to_owned(), "n".to_owned())].into());
    es
}

fn values() -> BTreeMap<String, Vec<u8>> {
    [
        ("user".to_owned(), b"u1".to_vec()),
        ("pass".to_owned(), b"p1".to_vec()),
    ]
    .into()
}

fn keys(data: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    data.keys().map(String::as_str).collect()
}

#[test]
fn without_a_template_values_labels_and_annotations_are_copied() {
    let desired = build(
        &es(None),
        values(),
        &TemplateSources::default(),
        &fake_render,
    )
    .unwrap();
    assert_eq!(keys(&desired.data), ["pass", "user"]);
    assert_eq!(desired.labels["team"], "blue");
    assert_eq!(desired.annotations["note"], "n");
    assert_eq!(desired.type_, None);
}

#[test]
fn template_data_replaces_values_unless_merge() {
    let template = ExternalSecretTemplate {
        type_: Some("kubernetes.io/basic-auth".into()),
        data: [("url".to_owned(), "db://{{ .user }}@host".to_owned())].into(),
        metadata: Some(TemplateMetadata {
            labels: [("app".to_owned(), "{{ .user }}".to_owned())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let desired = build(
        &es(Some(template.clone())),
        values(),
        &TemplateSources::default(),
        &fake_render,
    )
    .unwrap();
    assert_eq!(keys(&desired.data), ["url"]);
    assert_eq!(desired.data["url"], b"db://u1@host");
    assert_eq!(desired.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    // With a template, the ExternalSecret's own labels are not copied.
    assert_eq!(
        desired.labels,
        BTreeMap::from([("app".to_owned(), "u1".to_owned())])
    );

    let merged = ExternalSecretTemplate {
        merge_policy: Some("Merge".into()),
        ..template
    };
    let desired = build(
        &es(Some(merged)),
        values(),
        &TemplateSources::default(),
        &fake_render,
    )
    .unwrap();
    assert_eq!(keys(&desired.data), ["pass", "url", "user"]);
}

#[test]
fn template_from_config_maps_and_literals() {
    let template = ExternalSecretTemplate {
        template_from: vec![
            TemplateFrom {
                config_map: Some(TemplateRef {
                    name: "tpl".into(),
                    items: vec![
                        TemplateRefItem {
                            key: "config.ini".into(),
                            template_as: None,
                        },
                        TemplateRefItem {
                            key: "pairs".into(),
                            template_as: Some("KeysAndValues".into()),
                        },
                    ],
                }),
                ..Default::default()
            },
            TemplateFrom {
                literal: Some("owner: '{{ .user }}'".into()),
                target: Some("Annotations".into()),
                ..Default::default()
            },
        ],
        // template.data wins over templateFrom.
        data: [("config.ini".to_owned(), "override".to_owned())].into(),
        ..Default::default()
    };
    let sources = TemplateSources {
        config_maps: [(
            "tpl".to_owned(),
            [
                ("config.ini".to_owned(), "user={{ .user }}".to_owned()),
                ("pairs".to_owned(), "a: '{{ .pass }}'\nb: x".to_owned()),
            ]
            .into(),
        )]
        .into(),
        ..Default::default()
    };
    let desired = build(&es(Some(template)), values(), &sources, &fake_render).unwrap();
    assert_eq!(keys(&desired.data), ["a", "b", "config.ini"]);
    assert_eq!(desired.data["config.ini"], b"override");
    assert_eq!(desired.data["a"], b"p1");
    assert_eq!(desired.annotations["owner"], "u1");
}

#[test]
fn missing_template_sources_are_named() {
    let template = ExternalSecretTemplate {
        template_from: vec![TemplateFrom {
            config_map: Some(TemplateRef {
                name: "absent".into(),
                items: vec![],
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = build(
        &es(Some(template)),
        values(),
        &TemplateSources::default(),
        &fake_render,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ConfigMap \"absent\" not found"), "{error}");
}

#[test]
fn engine_v1_is_unsupported() {
    let template = ExternalSecretTemplate {
        engine_version: Some("v1".into()),
        ..Default::default()
    };
    let error = build(
        &es(Some(template)),
        values(),
        &TemplateSources::default(),
        &fake_render,
    )
    .unwrap_err();
    assert!(matches!(error, Error::Unsupported(_)), "{error}");
}

#[test]
fn hashes_match_eso() {
    // Go: fmt.Sprintf("%x", sha3.Sum224([]byte(fmt.Sprintf("%+v", v)))), as ESO's ObjectHash.
    let data = BTreeMap::from([("a".to_owned(), b"hi".to_vec())]);
    // "map[a:[104 105]]"
    assert_eq!(
        data_hash(&data),
        "4ff142fdfbffa99a208cef0e7968b5e48868cbd34ac0c9be3b668e0f"
    );
    // "map[]"
    assert_eq!(
        data_hash(&BTreeMap::new()),
        "74a974446e359fb3e6baff9bd0058950e6edd0f040888d9989b0a11b"
    );
    // "ns/app"
    assert_eq!(
        owner_label_value("ns", "app"),
        "167f89bed2a98a8e396edb2463d96fd47c9f917511cc1c2a3817e80e"
    );
    // "{annotations:map[note:n] labels:map[team:blue]}"
    let es = es(None);
    assert_eq!(
        meta_hash(es.labels(), es.annotations()),
        "8728abac928e95249d577829fbf657875051e346812496de5237ab90"
    );
    // "{annotations:map[] labels:map[]}"
    assert_eq!(
        meta_hash(&BTreeMap::new(), &BTreeMap::new()),
        "f47fe3c0b255b6dd8047cdffa772587bb829efe7a1cb70febeda2eb2"
    );
}

#[test]
fn policies_parse() {
    assert_eq!(CreationPolicy::parse(None).unwrap(), CreationPolicy::Owner);
    assert_eq!(
        CreationPolicy::parse(Some("Merge")).unwrap(),
        CreationPolicy::Merge
    );
    assert!(CreationPolicy::parse(Some("Sometimes")).is_err());
    assert_eq!(
        DeletionPolicy::parse(Some("Merge")).unwrap(),
        DeletionPolicy::Merge
    );
    assert!(DeletionPolicy::parse(Some("Keep")).is_err());
}

fn bytes(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn managed_secret(entries: &[(&str, &str, serde_json::Value)]) -> Secret {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let mut secret = Secret::default();
    secret.metadata.managed_fields = Some(
        entries
            .iter()
            .map(|(manager, operation, fields)| ManagedFieldsEntry {
                manager: Some(manager.to_string()),
                operation: Some(operation.to_string()),
                fields_v1: Some(FieldsV1(fields.clone())),
                ..Default::default()
            })
            .collect(),
    );
    secret
}

#[test]
fn applied_keys_come_from_our_apply_entries_only() {
    let secret = managed_secret(&[
        (
            "secret-bridge",
            "Apply",
            serde_json::json!({"f:data": {".": {}, "f:user": {}, "f:pass": {}}}),
        ),
        (
            "secret-bridge",
            "Update",
            serde_json::json!({"f:data": {"f:removed": {}}}),
        ),
        (
            "kubectl",
            "Apply",
            serde_json::json!({"f:data": {"f:other": {}}}),
        ),
    ]);
    let keys: Vec<String> = applied_data_keys(&secret, "secret-bridge")
        .into_iter()
        .collect();
    assert_eq!(keys, ["pass", "user"]);
}

#[test]
fn merge_keeps_other_keys_and_drops_keys_we_no_longer_want() {
    let existing = bytes(&[("theirs", "t"), ("old", "o"), ("user", "u0")]);
    let desired = bytes(&[("user", "u1")]);
    let applied: BTreeSet<String> = ["old".to_owned(), "user".to_owned()].into();
    let merged = final_data(CreationPolicy::Merge, &desired, &existing, &applied);
    assert_eq!(merged, bytes(&[("theirs", "t"), ("user", "u1")]));
    let owned = final_data(CreationPolicy::Owner, &desired, &existing, &applied);
    assert_eq!(owned, desired);
    // Owner/Orphan: whatever an apply leaves behind that we did not ask for goes.
    assert_eq!(
        foreign_keys(CreationPolicy::Orphan, &desired, &existing),
        ["old", "theirs"]
    );
    assert!(foreign_keys(CreationPolicy::CreateOrMerge, &desired, &existing).is_empty());
}

#[test]
fn ownership_as_eso() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let owned_by = |api_version: &str, kind: &str, name: &str| {
        let mut secret = Secret::default();
        secret.metadata.name = Some("target".into());
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        secret
    };
    let other_es = owned_by("external-secrets.io/v1", "ExternalSecret", "other");
    let error = check_owner(&other_es, "app", CreationPolicy::Merge).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("owned by another ExternalSecret")
    );
    let ours = owned_by("external-secrets.io/v1", "ExternalSecret", "app");
    assert!(check_owner(&ours, "app", CreationPolicy::Orphan).is_ok());
    let deployment = owned_by("apps/v1", "Deployment", "web");
    assert!(check_owner(&deployment, "app", CreationPolicy::Owner).is_err());
    assert!(check_owner(&deployment, "app", CreationPolicy::Merge).is_ok());
}
