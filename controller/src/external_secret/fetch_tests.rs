use super::*;
use crate::api::external_secret::{
    ExternalSecretData, ExternalSecretDataFrom, ExternalSecretRewrite, RewriteRegexp,
    RewriteTransform,
};
use crate::aws::fake::{ACCOUNT_ARN, FakeSource};

const DOC: &str = r#"{"username":"bob","password":"abc123xyz456","db":{"hosts":["h1","h2"],"port":5432},"dotted.key":"literal","ratio":1.50,"none":null}"#;

fn remote(key: &str, property: Option<&str>) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        property: property.map(Into::into),
        ..Default::default()
    }
}

fn data(items: Vec<(&str, RemoteRef)>) -> ExternalSecretSpec {
    ExternalSecretSpec {
        data: items
            .into_iter()
            .map(|(secret_key, remote_ref)| ExternalSecretData {
                secret_key: secret_key.into(),
                remote_ref,
                source_ref: None,
            })
            .collect(),
        ..Default::default()
    }
}

fn extract(reference: RemoteRef) -> ExternalSecretSpec {
    extract_with(reference, vec![])
}

fn extract_with(reference: RemoteRef, rewrite: Vec<ExternalSecretRewrite>) -> ExternalSecretSpec {
    ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            extract: Some(reference),
            rewrite,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn text(data: &SecretData, key: &str) -> String {
    String::from_utf8(data.data[key].clone()).unwrap()
}

fn keys(data: &SecretData) -> Vec<&str> {
    data.data.keys().map(String::as_str).collect()
}

async fn fails(spec: &ExternalSecretSpec, source: &FakeSource) -> String {
    let error = fetch(spec, "", source).await.unwrap_err().to_string();
    for secret in ["abc123xyz456", "s3cr3t"] {
        assert!(!error.contains(secret), "{error}");
    }
    error
}

#[tokio::test]
async fn extract_then_data_overrides_and_each_secret_is_read_once() {
    let source = FakeSource::default().secret("app-secret", DOC);
    let mut spec = extract(remote("app-secret", None));
    spec.data = data(vec![("username", remote("app-secret", Some("password")))]).data;
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "username"), "abc123xyz456");
    assert_eq!(text(&fetched, "password"), "abc123xyz456");
    assert_eq!(text(&fetched, "db"), r#"{"hosts":["h1","h2"],"port":5432}"#);
    assert_eq!(text(&fetched, "dotted.key"), "literal");
    assert_eq!(text(&fetched, "none"), "");
    assert_eq!(fetched.versions["app-secret"], "app-secret-v1");
    assert_eq!(source.calls(), ["GetSecretValue app-secret"]);
    assert!(!format!("{fetched:?}").contains("abc123"));
}

#[tokio::test]
async fn property_is_gjson_as_eso_reads_it() {
    let source = FakeSource::default().secret("app", DOC);
    let spec = data(vec![
        ("nested", remote("app", Some("db.port"))),
        ("index", remote("app", Some("db.hosts.1"))),
        ("count", remote("app", Some("db.hosts.#"))),
        ("object", remote("app", Some("db"))),
        ("dotted", remote("app", Some("dotted.key"))),
        ("ratio", remote("app", Some("ratio"))),
        ("null", remote("app", Some("none"))),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "nested"), "5432");
    assert_eq!(text(&fetched, "index"), "h2");
    assert_eq!(text(&fetched, "count"), "2");
    assert_eq!(
        text(&fetched, "object"),
        r#"{"hosts":["h1","h2"],"port":5432}"#
    );
    assert_eq!(text(&fetched, "dotted"), "literal");
    assert_eq!(text(&fetched, "ratio"), "1.5", "gjson's Go String()");
    assert_eq!(text(&fetched, "null"), "");
}

#[tokio::test]
async fn keys_may_be_names_full_or_partial_arns() {
    let source = FakeSource::default().secret("other", "plain");
    let full = format!("{ACCOUNT_ARN}other-AbCdEf");
    let partial = format!("{ACCOUNT_ARN}other");
    let spec = data(vec![
        ("name", remote("other", None)),
        ("full", remote(&full, None)),
        ("partial", remote(&partial, None)),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "name"), "plain");
    assert_eq!(text(&fetched, "full"), "plain");
    assert_eq!(text(&fetched, "partial"), "plain");
    assert_eq!(
        source.count("BatchGetSecretValue"),
        1,
        "{:?}",
        source.calls()
    );
    assert_eq!(
        source.count("GetSecretValue"),
        0,
        "the batch answered for all three"
    );
}

#[tokio::test]
async fn the_store_prefix_is_prepended_to_every_key() {
    let source = FakeSource::default().secret("team/db", r#"{"u":"a"}"#);
    let spec = data(vec![("u", remote("db", Some("u")))]);
    let fetched = fetch(&spec, "team/", &source).await.unwrap();
    assert_eq!(text(&fetched, "u"), "a");
    assert_eq!(fetched.versions["db"], "team/db-v1");
}

#[tokio::test]
async fn versions_by_stage_label_or_version_id() {
    let source = FakeSource::default()
        .labelled("db", "one", &["BLUE"])
        .secret("db", "two");
    let mut previous = remote("db", None);
    previous.version = Some("AWSPREVIOUS".into());
    let mut blue = remote("db", None);
    blue.version = Some("BLUE".into());
    let mut by_id = remote("db", None);
    by_id.version = Some("uuid/db-v2".into());
    let spec = data(vec![
        ("current", remote("db", None)),
        ("previous", previous),
        ("blue", blue),
        ("id", by_id),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "current"), "two");
    assert_eq!(text(&fetched, "previous"), "one");
    assert_eq!(text(&fetched, "blue"), "one");
    assert_eq!(text(&fetched, "id"), "two");
    assert_eq!(fetched.versions["db@AWSPREVIOUS"], "db-v1");
    assert_eq!(fetched.versions["db@uuid/db-v2"], "db-v2");
}

#[tokio::test]
async fn decoding_strategies_apply_after_the_property() {
    let source = FakeSource::default().secret(
        "enc",
        r#"{"std":"aGVsbG8=","url":"_-8=","plain":"not base64!","bad":"aGVsbG8"}"#,
    );
    let with = |property: &str, strategy: &str| {
        let mut r = remote("enc", Some(property));
        r.decoding_strategy = Some(strategy.into());
        r
    };
    let spec = data(vec![
        ("std", with("std", "Base64")),
        ("url", with("url", "Base64URL")),
        ("auto", with("std", "Auto")),
        ("kept", with("plain", "Auto")),
        ("none", with("std", "None")),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "std"), "hello");
    assert_eq!(fetched.data["url"], [0xff, 0xef]);
    assert_eq!(text(&fetched, "auto"), "hello");
    assert_eq!(text(&fetched, "kept"), "not base64!");
    assert_eq!(text(&fetched, "none"), "aGVsbG8=");
    let error = fails(&data(vec![("k", with("bad", "Base64"))]), &source).await;
    assert_eq!(
        error,
        "error processing spec.data[0] (key: enc), err: error applying decoding strategy Base64 to data: failure decoding key k: the value is not valid base64"
    );
    let mut extracted = remote("enc", None);
    extracted.decoding_strategy = Some("Auto".into());
    let fetched = fetch(&extract(extracted), "", &source).await.unwrap();
    assert_eq!(text(&fetched, "std"), "hello");
    assert_eq!(
        text(&fetched, "bad"),
        "aGVsbG8",
        "Auto keeps what does not decode"
    );
}

#[tokio::test]
async fn binary_secrets_are_read_as_they_are() {
    let source = FakeSource::default()
        .binary("cert", &[0x30, 0x82, 0x00, 0xff])
        .binary("json", br#"{"a":"b"}"#);
    let spec = data(vec![
        ("cert", remote("cert", None)),
        ("a", remote("json", Some("a"))),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(fetched.data["cert"], [0x30, 0x82, 0x00, 0xff]);
    assert_eq!(text(&fetched, "a"), "b");
    let fetched = fetch(&extract(remote("json", None)), "", &source)
        .await
        .unwrap();
    assert_eq!(text(&fetched, "a"), "b");
}

#[tokio::test]
async fn null_byte_policy_fail_refuses_nul_bytes() {
    let source = FakeSource::default()
        .binary("bin", b"a\0b")
        .secret("json", r#"{"k":"a\u0000b"}"#);
    let mut fail = remote("bin", None);
    fail.null_byte_policy = Some("Fail".into());
    let fetched = fetch(&data(vec![("k", remote("bin", None))]), "", &source)
        .await
        .unwrap();
    assert_eq!(fetched.data["k"], b"a\0b", "Ignore is the default");
    let error = fails(&data(vec![("k", fail)]), &source).await;
    assert!(
        error.contains(r#"fetched secret value for key "k" contains null bytes"#),
        "{error}"
    );
    let mut extract_fail = remote("json", None);
    extract_fail.null_byte_policy = Some("Fail".into());
    let error = fails(&extract(extract_fail), &source).await;
    assert!(
        error.starts_with(
            "error processing spec.dataFrom[0].extract, err: fetched secret value for key \"k\""
        ),
        "{error}"
    );
}

#[tokio::test]
async fn metadata_policy_fetch_reads_tags() {
    let source = FakeSource::default()
        .secret("app", "s3cr3t")
        .tags("app", &[("team", "a&b"), ("env", "prod")]);
    let fetch_tags = |property: Option<&str>| {
        let mut r = remote("app", property);
        r.metadata_policy = Some("Fetch".into());
        r
    };
    let spec = data(vec![
        ("all", fetch_tags(None)),
        ("env", fetch_tags(Some("env"))),
        ("value", remote("app", None)),
    ]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "all"), r#"{"env":"prod","team":"a\u0026b"}"#);
    assert_eq!(text(&fetched, "env"), "prod");
    assert_eq!(text(&fetched, "value"), "s3cr3t");
    assert_eq!(source.count("DescribeSecret"), 1, "{:?}", source.calls());
    let fetched = fetch(&extract(fetch_tags(None)), "", &source)
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["env", "team"]);
    assert_eq!(text(&fetched, "team"), "a&b");
    let error = fails(&data(vec![("k", fetch_tags(Some("owner")))]), &source).await;
    assert_eq!(error, "key owner does not exist in secret app");
}

#[tokio::test]
async fn extract_keys_are_converted_unless_rewritten() {
    let source = FakeSource::default().secret(
        "app",
        r#"{"db/user":"u","db pass":"p","é":"e","":"dropped"}"#,
    );
    let fetched = fetch(&extract(remote("app", None)), "", &source)
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["db_pass", "db_user", "é"]);
    let mut unicode = remote("app", None);
    unicode.conversion_strategy = Some("Unicode".into());
    let fetched = fetch(&extract(unicode), "", &source).await.unwrap();
    assert_eq!(keys(&fetched), ["db_U0020_pass", "db_U002f_user", "é"]);
    let rewrite = |source: &str, target: &str| ExternalSecretRewrite {
        regexp: Some(RewriteRegexp {
            source: source.into(),
            target: target.into(),
        }),
        ..Default::default()
    };
    let spec = extract_with(
        remote("app", None),
        vec![
            rewrite("^db/", "DB_"),
            rewrite("^DB_(.*)$", "${1}_x"),
            rewrite(" ", "-"),
        ],
    );
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(keys(&fetched), ["db-pass", "user_x", "é"]);
    let upper = ExternalSecretRewrite {
        transform: Some(RewriteTransform {
            template: r#"{{ .value | upper | replace "/" "_" | replace " " "_" }}"#.into(),
        }),
        ..Default::default()
    };
    let spec = extract_with(remote("app", None), vec![rewrite("^db", "app"), upper]);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(keys(&fetched), ["APP_PASS", "APP_USER", "É"]);
    let spec = extract_with(remote("app", None), vec![rewrite("^x", "y")]);
    let error = fails(&spec, &source).await;
    assert_eq!(
        error,
        "error processing spec.dataFrom[0].extract, err: invalid secret keys (TIP: use rewrite or conversionStrategy to change keys): key has invalid character  , only alphanumeric, '-', '.' and '_' are allowed: db pass"
    );
    let collide = FakeSource::default().secret("c", r#"{"a/b":"1","a_b":"2"}"#);
    let error = fails(&extract(remote("c", None)), &collide).await;
    assert!(
        error.ends_with("secret name collision during conversion: a_b"),
        "{error}"
    );
}

#[tokio::test]
async fn several_secrets_are_read_in_batches_of_twenty() {
    let mut source = FakeSource::default();
    let mut items = Vec::new();
    let names: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        source = source.secret(name, &format!("value-{name}"));
    }
    for name in &names {
        items.push((name.as_str(), remote(name, None)));
    }
    let spec = data(items);
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(fetched.data.len(), 25);
    assert_eq!(text(&fetched, "s24"), "value-s24");
    assert_eq!(fetched.versions["s07"], "s07-v1");
    assert_eq!(
        source.count("BatchGetSecretValue"),
        2,
        "{:?}",
        source.calls()
    );
    assert_eq!(source.count("GetSecretValue"), 0);
}

#[tokio::test]
async fn batch_errors_stay_per_secret_and_a_refused_batch_falls_back() {
    let source = FakeSource::default()
        .secret("a", "1")
        .secret("b", "2")
        .failing("b", "DecryptionFailure");
    let spec = data(vec![("a", remote("a", None)), ("b", remote("b", None))]);
    let error = fetch(&spec, "", &source).await.unwrap_err();
    assert!(
        matches!(&error, Error::Aws(aws) if aws.secret == "b" && aws.code == "DecryptionFailure"),
        "{error}"
    );
    let missing = data(vec![
        ("a", remote("a", None)),
        ("m", remote("missing", None)),
    ]);
    let error = fetch(&missing, "", &source).await.unwrap_err();
    assert!(
        matches!(&error, Error::Aws(aws) if aws.secret == "missing" && aws.is_deleted()),
        "{error}"
    );
    let skipped = fetch_skipping_deleted(&missing, "", &source).await.unwrap();
    assert_eq!(keys(&skipped), ["a"]);
    assert_eq!(skipped.deleted, ["missing"]);

    let refused = FakeSource::default()
        .secret("a", "1")
        .secret("b", "2")
        .without_batch();
    let fetched = fetch(&spec, "", &refused).await.unwrap();
    assert_eq!(text(&fetched, "b"), "2");
    assert_eq!(refused.count("GetSecretValue"), 2, "{:?}", refused.calls());
}

#[tokio::test]
async fn errors_say_what_eso_says_without_values() {
    let source = FakeSource::default().secret("plain", "s3cr3t-plain-text");
    let error = fails(&data(vec![("k", remote("missing", None))]), &source).await;
    assert!(error.contains("ResourceNotFoundException"), "{error}");
    let error = fails(&data(vec![("k", remote("plain", Some("user")))]), &source).await;
    assert_eq!(error, "key user does not exist in secret plain");
    let error = fails(&extract(remote("plain", None)), &source).await;
    assert!(
        error.starts_with("unable to unmarshal secret plain"),
        "{error}"
    );
}

#[tokio::test]
async fn unsupported_and_invalid_fields_are_named() {
    let generator = ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            source_ref: Some(
                serde_json::json!({"generatorRef": {"kind": "Password", "name": "p"}}),
            ),
            ..Default::default()
        }],
        ..Default::default()
    };
    let merge = extract_with(
        remote("a", None),
        vec![ExternalSecretRewrite {
            merge: Some(serde_json::json!({"into": "all"})),
            ..Default::default()
        }],
    );
    for (spec, field) in [
        (generator, "spec.dataFrom[0].sourceRef (generators)"),
        (merge, "spec.dataFrom[0].rewrite[0].merge"),
    ] {
        let error = fetch(&spec, "", &FakeSource::default()).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unsupported(f) if f == field),
            "{error}"
        );
    }
    let mut bad = remote("a", None);
    bad.conversion_strategy = Some("Ascii".into());
    let error = fetch(&extract(bad), "", &FakeSource::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Misconfigured(m) if m.contains("spec.dataFrom[0].extract") && m.contains("Ascii")),
        "{error}"
    );
}
