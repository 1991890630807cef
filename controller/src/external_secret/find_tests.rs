use std::collections::BTreeMap;

use crate::api::external_secret::{
    ExternalSecretDataFrom, ExternalSecretFind, ExternalSecretRewrite, ExternalSecretSpec,
    FindName, RewriteRegexp,
};
use crate::aws::fake::FakeSource;
use crate::external_secret::fetch::{SecretData, fetch};

fn find(regexp: Option<&str>, path: Option<&str>, tags: &[(&str, &str)]) -> ExternalSecretFind {
    ExternalSecretFind {
        name: regexp.map(|r| FindName {
            regexp: Some(r.into()),
        }),
        path: path.map(Into::into),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

fn spec(find: ExternalSecretFind) -> ExternalSecretSpec {
    spec_with(find, vec![])
}

fn spec_with(find: ExternalSecretFind, rewrite: Vec<ExternalSecretRewrite>) -> ExternalSecretSpec {
    ExternalSecretSpec {
        data_from: vec![ExternalSecretDataFrom {
            find: Some(Box::new(find)),
            rewrite,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn keys(data: &SecretData) -> Vec<&str> {
    data.data.keys().map(String::as_str).collect()
}

fn text(data: &SecretData, key: &str) -> String {
    String::from_utf8(data.data[key].clone()).unwrap()
}

fn source() -> FakeSource {
    FakeSource::default()
        .secret("app/db", "db-value")
        .secret("app/cache", "cache-value")
        .secret("other/db", "other-value")
        .binary("app/cert", b"\x30\x82")
        .tags("app/db", &[("team", "payments"), ("env", "prod")])
        .tags("app/cache", &[("team", "search"), ("env", "production")])
        .tags("other/db", &[("team", "payments"), ("env", "dev")])
}

#[tokio::test]
async fn name_without_path_lists_then_reads_matches_in_batches() {
    let source = source().page_size(2);
    let fetched = fetch(&spec(find(Some("^app/"), None, &[])), "", &source)
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["app_cache", "app_cert", "app_db"]);
    assert_eq!(text(&fetched, "app_db"), "db-value");
    assert_eq!(fetched.data["app_cert"], b"\x30\x82");
    assert_eq!(fetched.versions["app/db"], "app/db-v1");
    assert_eq!(source.count("ListSecrets"), 2, "two pages");
    assert_eq!(
        source.count("BatchGetSecretValue"),
        1,
        "{:?}",
        source.calls()
    );
    assert_eq!(source.count("GetSecretValue"), 0);
}

#[tokio::test]
async fn the_regexp_is_unanchored_go_syntax() {
    let fetched = fetch(&spec(find(Some(r"db$"), None, &[])), "", &source())
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["app_db", "other_db"]);
    let everything = fetch(&spec(find(Some(""), None, &[])), "", &source())
        .await
        .unwrap();
    assert_eq!(everything.data.len(), 4);
}

#[tokio::test]
async fn path_selects_by_name_prefix_with_a_filtered_batch() {
    let source = source();
    let fetched = fetch(&spec(find(Some("db"), Some("app/"), &[])), "", &source)
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["app_db"]);
    assert_eq!(
        source.calls(),
        ["BatchGetSecretValue Name=app/"],
        "one filtered batch, as ESO"
    );
}

#[tokio::test]
async fn tags_are_sent_as_separate_prefix_filters_as_eso_does() {
    let source = source();
    let fetched = fetch(&spec(find(None, None, &[("env", "prod")])), "", &source)
        .await
        .unwrap();
    assert_eq!(
        keys(&fetched),
        ["app_cache", "app_db"],
        "`production` starts with `prod`"
    );
    assert_eq!(
        source.calls(),
        ["BatchGetSecretValue TagKey=env,TagValue=prod"]
    );
    let mixed = fetch(&spec(find(None, None, &[("env", "payments")])), "", &source)
        .await
        .unwrap();
    assert_eq!(
        keys(&mixed),
        ["app_db", "other_db"],
        "key and value are matched each on its own"
    );
    let with_path = fetch(
        &spec(find(None, Some("other"), &[("team", "payments")])),
        "",
        &source,
    )
    .await
    .unwrap();
    assert_eq!(keys(&with_path), ["other_db"]);
}

#[tokio::test]
async fn name_and_tags_without_path_list_with_the_tag_filters() {
    let source = source();
    let fetched = fetch(
        &spec(find(Some("^app"), None, &[("team", "payments")])),
        "",
        &source,
    )
    .await
    .unwrap();
    assert_eq!(keys(&fetched), ["app_db"]);
    assert_eq!(
        source.calls()[0],
        "ListSecrets TagKey=team,TagValue=payments"
    );
}

#[tokio::test]
async fn find_needs_a_name_or_tags() {
    for wrong in [find(None, None, &[]), find(None, Some("app/"), &[])] {
        let error = fetch(&spec(wrong), "", &source())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "error processing spec.dataFrom[0].find, err: error getting all secrets: unexpected find operator"
        );
    }
    let error = fetch(&spec(find(Some("("), None, &[])), "", &source())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("could not compile find.name.regexp [(]"),
        "{error}"
    );
}

#[tokio::test]
async fn conversion_rewrite_decoding_and_null_bytes_apply_to_found_keys() {
    let mut unicode = find(Some("^app/db"), None, &[]);
    unicode.conversion_strategy = Some("Unicode".into());
    let fetched = fetch(&spec(unicode), "", &source()).await.unwrap();
    assert_eq!(keys(&fetched), ["app_U002f_db"]);

    let rewrite = ExternalSecretRewrite {
        regexp: Some(RewriteRegexp {
            source: "^app/(.*)".into(),
            target: "$1".into(),
        }),
        ..Default::default()
    };
    let fetched = fetch(
        &spec_with(find(Some("^app/(db|cache)"), None, &[]), vec![rewrite]),
        "",
        &source(),
    )
    .await
    .unwrap();
    assert_eq!(keys(&fetched), ["cache", "db"]);

    let encoded = FakeSource::default().secret("b64/one", "aGVsbG8=");
    let mut decoded = find(Some("b64"), None, &[]);
    decoded.decoding_strategy = Some("Base64".into());
    let fetched = fetch(&spec(decoded), "", &encoded).await.unwrap();
    assert_eq!(text(&fetched, "b64_one"), "hello");

    let nul = FakeSource::default().binary("bin/x", b"a\0b");
    let mut strict = find(Some("bin"), None, &[]);
    strict.null_byte_policy = Some("Fail".into());
    let error = fetch(&spec(strict), "", &nul)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(r#"key "bin_x" contains null bytes"#),
        "{error}"
    );
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_fails_with_its_own_error() {
    let source = source().failing("app/cache", "DecryptionFailure");
    let error = fetch(&spec(find(Some("^app/"), None, &[])), "", &source)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"app/cache\": DecryptionFailure"),
        "{error}"
    );
    let error = fetch(
        &spec(find(None, Some("app/"), &[("team", "search")])),
        "",
        &source,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("\"app/cache\": DecryptionFailure"),
        "{error}"
    );
}

#[tokio::test]
async fn the_store_prefix_does_not_apply_to_find() {
    let source = source();
    let fetched = fetch(&spec(find(Some("^app/db$"), None, &[])), "team/", &source)
        .await
        .unwrap();
    assert_eq!(keys(&fetched), ["app_db"]);
}

#[tokio::test]
async fn later_entries_and_data_win_over_found_keys() {
    let mut spec = spec(find(Some("^app/db$"), None, &[]));
    spec.data
        .push(crate::api::external_secret::ExternalSecretData {
            secret_key: "app_db".into(),
            remote_ref: crate::api::external_secret::RemoteRef {
                key: "other/db".into(),
                ..Default::default()
            },
            source_ref: None,
        });
    let source = source();
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(text(&fetched, "app_db"), "other-value");
}

#[tokio::test]
async fn a_refused_filtered_batch_falls_back_to_listing() {
    let source = source().without_batch();
    let fetched = fetch(
        &spec(find(None, Some("app/"), &[("env", "prod")])),
        "",
        &source,
    )
    .await
    .unwrap();
    assert_eq!(keys(&fetched), ["app_cache", "app_db"]);
    assert_eq!(
        source.calls(),
        [
            "BatchGetSecretValue TagKey=env,TagValue=prod,Name=app/",
            "ListSecrets TagKey=env,TagValue=prod,Name=app/",
            "BatchGetSecretValue app/db,app/cache",
            "GetSecretValue app/db",
            "GetSecretValue app/cache",
        ]
    );
}

#[tokio::test]
async fn find_wins_over_extract_in_one_entry_as_in_eso() {
    let mut spec = spec(find(Some("^other/"), None, &[]));
    spec.data_from[0].extract = Some(crate::api::external_secret::RemoteRef {
        key: "app/db".into(),
        ..Default::default()
    });
    let source = source();
    let fetched = fetch(&spec, "", &source).await.unwrap();
    assert_eq!(keys(&fetched), ["other_db"]);
    assert!(!source.calls().iter().any(|c| c.contains("app/db")));
}
