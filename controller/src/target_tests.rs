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
                template,
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
    // Go: fmt.Sprintf("%x", md5.Sum([]byte(fmt.Sprintf("%+v", map[string][]byte{"a": []byte("hi")}))))
    // hashes "map[a:[104 105]]".
    let data = BTreeMap::from([("a".to_owned(), b"hi".to_vec())]);
    assert_eq!(data_hash(&data), md5_hex(b"map[a:[104 105]]"));
    assert_eq!(data_hash(&BTreeMap::new()), md5_hex(b"map[]"));
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(owner_label_value("ns", "app"), md5_hex(b"ns/app"));
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
