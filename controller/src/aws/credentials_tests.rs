use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;

use super::*;

/// STS that hands out keys named after the role, recording each call as
/// "<Action> <RoleArn> by <signing key> ext=<ExternalId> tag=<first tag>".
#[derive(Debug, Clone, Default)]
struct FakeSts {
    calls: Arc<Mutex<Vec<String>>>,
}

impl HttpConnector for FakeSts {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = std::str::from_utf8(request.body().bytes().unwrap_or_default())
            .unwrap_or_default()
            .to_owned();
        let param = |name: &str| {
            body.split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
                .unwrap_or_default()
        };
        let signer = request
            .headers()
            .get("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or("unsigned")
            .to_owned();
        let action = param("Action");
        let role = param("RoleArn");
        self.calls.lock().unwrap().push(format!(
            "{action} {role} by {signer} ext={} tag={}",
            param("ExternalId"),
            param("Tags.member.1.Key")
        ));
        let xml = match action.as_str() {
            "AssumeRole" => format!(
                r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>key-of-{name}</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2100-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>{role}</Arn><AssumedRoleId>id:x</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"#,
                name = role.rsplit('/').next().unwrap_or_default()
            ),
            _ => r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:sts::1:assumed-role/main/secret-bridge</Arn><UserId>u</UserId><Account>1</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#.to_owned(),
        };
        let response = aws_smithy_runtime_api::http::Response::new(
            200.try_into().expect("status"),
            SdkBody::from(xml),
        );
        HttpConnectorFuture::ready(Ok(response))
    }
}

fn role(arn: &str, external_id: Option<&str>, tag: Option<(&str, &str)>) -> RoleToAssume {
    RoleToAssume {
        role_arn: arn.into(),
        external_id: external_id.map(Into::into),
        session_tags: tag
            .map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
            .unwrap_or_default(),
        transitive_tag_keys: Vec::new(),
    }
}

#[tokio::test]
async fn roles_are_assumed_in_order_each_signed_by_the_previous_and_cached() {
    let sts = FakeSts::default();
    let connector = SharedHttpConnector::new(sts.clone());
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("base-key", "s", None, None, "test"))
        .load()
        .await;
    let kube =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let factory = ClientFactory::new(base, kube);
    let auth = StoreAuth {
        base: BaseCredentials::Static(StaticKeys {
            access_key_id: "store-key".into(),
            secret_access_key: "s".into(),
            session_token: None,
        }),
        roles: vec![
            role("arn:aws:iam::1:role/first", None, None),
            role("arn:aws:iam::1:role/second", None, None),
            role(
                "arn:aws:iam::1:role/main",
                Some("ext-1"),
                Some(("team", "blue")),
            ),
        ],
    };
    factory.verify("eu-west-1", &auth).await.unwrap();
    factory.verify("eu-west-1", &auth).await.unwrap();
    let calls = sts.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "AssumeRole arn:aws:iam::1:role/first by store-key ext= tag=",
            "AssumeRole arn:aws:iam::1:role/second by key-of-first ext= tag=",
            "AssumeRole arn:aws:iam::1:role/main by key-of-second ext=ext-1 tag=team",
            "GetCallerIdentity  by key-of-main ext= tag=",
            // The second check reuses the cached session: no AssumeRole until expiry.
            "GetCallerIdentity  by key-of-main ext= tag=",
        ]
    );
}

#[test]
fn debug_output_hides_keys() {
    let keys = StaticKeys {
        access_key_id: "AKIA".into(),
        secret_access_key: "hunter4".into(),
        session_token: Some("hunter5".into()),
    };
    let printed = format!("{keys:?}");
    assert!(!printed.contains("hunter"), "{printed}");
}
