use std::sync::Mutex;

use super::*;
use crate::api::external_secret::{ExternalSecretData, ExternalSecretDataFrom};
use crate::aws::AwsError;

/// A fake Secrets Manager: secrets by (name, stage), counting calls.
#[derive(Default)]
struct FakeSource {
    secrets: Vec<(&'static str, &'static str, SecretValue)>,
    calls: Mutex<usize>,
}

impl FakeSource {
    fn with(mut self, name: &'static str, stage: &'static str, version: &str, text: &str) -> Self {
        self.secrets.push((
            name,
            stage,
            SecretValue {
                name: name.into(),
                arn: format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"),
                version_id: version.into(),
                string: Some(text.into()),
                binary: None,
            },
        ));
        self
    }
}

impl SecretsSource for FakeSource {
    async fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        *self.calls.lock().unwrap() += 1;
        let stage = match version {
            VersionSelector::Stage(stage) => stage.as_str(),
            VersionSelector::Id(_) => "by-id",
        };
        self.secrets
            .iter()
            .find(|(name, s, _)| *name == key && *s == stage)
            .map(|(_, _, value)| value.clone())
            .ok_or_else(|| AwsError {
                operation: "GetSecretValue",
                secret: key.into(),
                code: "ResourceNotFoundException".into(),
                message: "Secrets Manager can't find the specified secret.".into(),
            })
    }
}

fn remote(key: &str, property: Option<&str>) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        property: property.map(Into::into),
        ..Default::default()
    }
}

fn text(data: &SecretData, key: &str) -> String {
    String::from_utf8(data.data[key].clone()).unwrap()
}

#[tokio::test]
async fn extract_then_data_overrides_and_each_secret_is_read_once() {
    let source = FakeSource::default().with(
        "app-secret",
        "AWSCURRENT",
        "v1",
        r#"{"username":"bob","password":"abc123xyz456"}"#,
    );
    let spec = ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            extract: Some(remote("app-secret", None)),
            ..Default::default()
        }],
        data: vec![ExternalSecretData {
            secret_key: "username".into(),
            remote_ref: remote("app-secret", Some("password")),
            source_ref: None,
        }],
        ..Default::default()
    };
    let data = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&data, "username"), "abc123xyz456");
    assert_eq!(text(&data, "password"), "abc123xyz456");
    assert_eq!(data.versions["app-secret"], "v1");
    assert_eq!(*source.calls.lock().unwrap(), 1);
    assert!(!format!("{data:?}").contains("abc123"));
}

#[tokio::test]
async fn version_prefix_and_decoding() {
    let source =
        FakeSource::default().with("team/db", "AWSPREVIOUS", "v0", r#"{"token":"aGVsbG8="}"#);
    let mut reference = remote("db", Some("token"));
    reference.version = Some("AWSPREVIOUS".into());
    reference.decoding_strategy = Some("Base64".into());
    let spec = ExternalSecretSpec {
        data: vec![ExternalSecretData {
            secret_key: "t".into(),
            remote_ref: reference,
            source_ref: None,
        }],
        ..Default::default()
    };
    let data = fetch(&spec, "team/", &source).await.unwrap();
    assert_eq!(text(&data, "t"), "hello");
    assert_eq!(data.versions["db@AWSPREVIOUS"], "v0");
}

#[tokio::test]
async fn errors_say_what_is_wrong_without_values() {
    let source = FakeSource::default().with("plain", "AWSCURRENT", "v1", "s3cr3t-plain-text");
    let cases = [
        (remote("missing", None), "ResourceNotFoundException"),
        (remote("plain", Some("user")), "is not valid JSON"),
    ];
    for (reference, expected) in cases {
        let spec = ExternalSecretSpec {
            data: vec![ExternalSecretData {
                secret_key: "k".into(),
                remote_ref: reference,
                source_ref: None,
            }],
            ..Default::default()
        };
        let error = fetch(&spec, "", &source).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
    let extract = ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            extract: Some(remote("plain", None)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = fetch(&extract, "", &source).await.unwrap_err().to_string();
    assert!(error.contains("not a JSON object"), "{error}");
}

#[tokio::test]
async fn unsupported_fields_are_named() {
    let spec = ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            source_ref: Some(
                serde_json::json!({"generatorRef": {"kind": "Password", "name": "p"}}),
            ),
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = fetch(&spec, "", &FakeSource::default()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unsupported(field) if field == "spec.dataFrom[0].sourceRef (generators)"),
        "{error}"
    );
}
