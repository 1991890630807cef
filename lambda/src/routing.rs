//! Routes: which clusters' queues a secret's events go to.
//!
//! A route names one queue and up to three matchers. A route matches a secret when every matcher
//! it has matches (a route without matchers matches every secret):
//! - `namePrefix`: the secret's name starts with it;
//! - `nameRegex`: the name matches it anywhere (`^…$` to anchor), as ESO's `find.name.regexp`;
//! - `tags`: the secret has every one of these tags with exactly this value.
//!
//! An event goes to the queue of every matching route, once per queue. Tags are looked up only
//! when a route whose name matchers accept the secret also matches by tag.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use secret_bridge::normalized::NormalizedMessage;
use secret_bridge::secret_id::SecretArn;
use serde::Deserialize;

use crate::aws::AwsError;
use crate::tags::{SecretRef, SecretTags, TagLookup};

/// One route as written in the `ROUTES` variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    pub queue_url: Option<String>,
    pub queue_arn: Option<String>,
    pub name_prefix: Option<String>,
    pub name_regex: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// An SQS queue the function sends to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub url: String,
    /// The queue's region when its URL or ARN names one; `None` means the function's own region
    /// (and, with `AWS_ENDPOINT_URL`, the emulator's).
    pub region: Option<String>,
}

impl Destination {
    /// A queue URL: `https://sqs.<region>.amazonaws.com/<account>/<name>` (any host is accepted,
    /// for VPC endpoints and emulators; the region is taken from AWS's own host names).
    pub fn from_url(url: &str) -> Result<Destination, String> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("queue URL {url:?} does not start with https://"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let segments: Vec<&str> = path.split('/').collect();
        if host.is_empty() || segments.len() != 2 || segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "queue URL {url:?} is not of the form https://sqs.<region>.amazonaws.com/<account>/<queue name>"
            ));
        }
        Ok(Destination {
            url: url.to_owned(),
            region: region_of_host(host),
        })
    }

    /// A queue ARN: `arn:<partition>:sqs:<region>:<account>:<name>`.
    pub fn from_arn(arn: &str) -> Result<Destination, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        let [
            "arn",
            partition @ ("aws" | "aws-cn" | "aws-us-gov"),
            "sqs",
            region,
            account,
            name,
        ] = parts.as_slice()
        else {
            return Err(format!(
                "{arn:?} is not an SQS queue ARN (arn:aws:sqs:<region>:<account>:<queue name>)"
            ));
        };
        if region.is_empty() || account.is_empty() || name.is_empty() {
            return Err(format!(
                "queue ARN {arn:?} lacks its region, account or name"
            ));
        }
        let domain = if *partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Ok(Destination {
            url: format!("https://sqs.{region}.{domain}/{account}/{name}"),
            region: Some((*region).to_owned()),
        })
    }

    /// FIFO queues need a message group (and a deduplication id).
    pub fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    /// The queue's name, for logs.
    pub fn queue_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// `sqs.<region>.amazonaws.com[.cn]`, `sqs.<region>.api.aws`, `<region>.queue.amazonaws.com[.cn]`.
fn region_of_host(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    let region = if let Some(rest) = host.strip_prefix("sqs.") {
        ["amazonaws.com", "amazonaws.com.cn", "api.aws"]
            .iter()
            .find_map(|domain| rest.strip_suffix(domain)?.strip_suffix('.'))
    } else if host == "queue.amazonaws.com" {
        Some("us-east-1")
    } else {
        [".queue.amazonaws.com", ".queue.amazonaws.com.cn"]
            .iter()
            .find_map(|domain| host.strip_suffix(domain))
    };
    region
        .filter(|r| !r.is_empty() && !r.contains('.'))
        .map(str::to_owned)
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: Destination,
    name_prefix: Option<String>,
    name_regex: Option<Regex>,
    tags: BTreeMap<String, String>,
}

impl Route {
    /// A route that sends every event to `destination`.
    pub fn everything(destination: Destination) -> Route {
        Route {
            destination,
            name_prefix: None,
            name_regex: None,
            tags: BTreeMap::new(),
        }
    }

    pub fn from_spec(spec: RouteSpec) -> Result<Route, String> {
        let destination = match (spec.queue_url, spec.queue_arn) {
            (Some(url), None) => Destination::from_url(&url)?,
            (None, Some(arn)) => Destination::from_arn(&arn)?,
            (Some(_), Some(_)) => return Err("give queueUrl or queueArn, not both".into()),
            (None, None) => return Err("queueUrl (or queueArn) is required".into()),
        };
        if spec.name_prefix.as_deref() == Some("") {
            return Err("namePrefix is empty (leave it out to match every name)".into());
        }
        let name_regex = spec
            .name_regex
            .map(|text| {
                Regex::new(&text).map_err(|e| {
                    format!("nameRegex {text:?} is not a valid regular expression: {e}")
                })
            })
            .transpose()?;
        let tags = spec.tags.unwrap_or_default();
        if tags.keys().any(String::is_empty) {
            return Err("tags has an empty tag key".into());
        }
        Ok(Route {
            destination,
            name_prefix: spec.name_prefix,
            name_regex,
            tags,
        })
    }

    /// Whether this route matches by tag.
    pub fn uses_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    fn matches_name(&self, name: &str) -> bool {
        self.name_prefix
            .as_deref()
            .is_none_or(|prefix| name.starts_with(prefix))
            && self.name_regex.as_ref().is_none_or(|re| re.is_match(name))
    }

    fn matches_tags(&self, tags: &SecretTags) -> bool {
        match tags {
            SecretTags::Known(tags) => self
                .tags
                .iter()
                .all(|(key, value)| tags.get(key) == Some(value)),
            // A secret that no longer exists has no tags to read: its deletion goes to every
            // route it may have matched, since an event can at most cause a refresh.
            SecretTags::Gone => true,
        }
    }
}

/// Every route, in configuration order.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether any route matches by tag (the function then needs `DescribeSecret`).
    pub fn uses_tags(&self) -> bool {
        self.routes.iter().any(Route::uses_tags)
    }

    /// The queues `message` goes to, each once. Reads the secret's tags only when a route whose
    /// name matchers accept the secret needs them.
    pub async fn destinations<T: TagLookup>(
        &self,
        message: &NormalizedMessage,
        lookup: &T,
    ) -> Result<BTreeSet<&Destination>, AwsError> {
        let name = routing_name(message);
        let candidates: Vec<&Route> = self
            .routes
            .iter()
            .filter(|route| route.matches_name(name))
            .collect();
        let tags = if candidates.iter().any(|route| route.uses_tags()) {
            Some(lookup.tags(SecretRef::of(message)).await?)
        } else {
            None
        };
        Ok(candidates
            .into_iter()
            .filter(|route| match &tags {
                Some(tags) => route.matches_tags(tags),
                None => !route.uses_tags(),
            })
            .map(|route| &route.destination)
            .collect())
    }
}

/// The secret's name, as matchers see it: a partial ARN (the only reference some CloudTrail
/// events give) is reduced to the name it carries.
pub fn routing_name(message: &NormalizedMessage) -> &str {
    match SecretArn::parse(&message.name) {
        Some(arn) => arn.tail,
        None => &message.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Route, String> {
        Route::from_spec(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn queue_urls_give_their_region() {
        let cases = [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                Some("eu-west-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("cn-north-1"),
            ),
            (
                "https://us-west-2.queue.amazonaws.com/123456789012/q",
                Some("us-west-2"),
            ),
            (
                "https://queue.amazonaws.com/123456789012/q",
                Some("us-east-1"),
            ),
            ("http://127.0.0.1:4566/123456789012/q", None),
            (
                "https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/123456789012/q",
                None,
            ),
        ];
        for (url, region) in cases {
            let destination = Destination::from_url(url).unwrap();
            assert_eq!(destination.region.as_deref(), region, "{url}");
            assert_eq!(destination.queue_name(), "q");
        }
    }

    #[test]
    fn malformed_queue_urls_are_refused() {
        for url in [
            "sqs.us-east-1.amazonaws.com/1/q",
            "https://sqs.us-east-1.amazonaws.com/q",
            "https://sqs.us-east-1.amazonaws.com/1/q/extra",
            "https:///1/q",
        ] {
            assert!(Destination::from_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn queue_arns_become_urls() {
        let destination =
            Destination::from_arn("arn:aws:sqs:eu-west-1:123456789012:c.fifo").unwrap();
        assert_eq!(
            destination.url,
            "https://sqs.eu-west-1.amazonaws.com/123456789012/c.fifo"
        );
        assert_eq!(destination.region.as_deref(), Some("eu-west-1"));
        assert!(destination.is_fifo());
        let china = Destination::from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").unwrap();
        assert_eq!(
            china.url,
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"
        );
        assert!(Destination::from_arn("arn:aws:sns:us-east-1:123456789012:t").is_err());
        assert!(Destination::from_arn("arn:aws:sqs:us-east-1:123456789012").is_err());
    }

    #[test]
    fn a_route_needs_exactly_one_queue_and_valid_matchers() {
        assert!(spec(r#"{"queueUrl":"https://sqs.us-east-1.amazonaws.com/1/q"}"#).is_ok());
        let errors = [
            (r#"{}"#, "queueUrl (or queueArn) is required"),
            (
                r#"{"queueUrl":"https://h/1/q","queueArn":"arn:aws:sqs:r:1:q"}"#,
                "not both",
            ),
            (
                r#"{"queueUrl":"https://h/1/q","namePrefix":""}"#,
                "namePrefix is empty",
            ),
            (
                r#"{"queueUrl":"https://h/1/q","nameRegex":"("}"#,
                "nameRegex \"(\"",
            ),
            (
                r#"{"queueUrl":"https://h/1/q","tags":{"":"x"}}"#,
                "empty tag key",
            ),
        ];
        for (json, expected) in errors {
            let error = spec(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn name_matchers_combine() {
        let route =
            spec(r#"{"queueUrl":"https://h/1/q","namePrefix":"team-a/","nameRegex":"db$"}"#)
                .unwrap();
        assert!(route.matches_name("team-a/db"));
        assert!(!route.matches_name("team-a/cache"));
        assert!(!route.matches_name("team-b/db"));
        let unanchored = spec(r#"{"queueUrl":"https://h/1/q","nameRegex":"prod-"}"#).unwrap();
        assert!(unanchored.matches_name("team/prod-db"));
        let everything = spec(r#"{"queueUrl":"https://h/1/q"}"#).unwrap();
        assert!(everything.matches_name("anything"));
    }

    #[test]
    fn tags_must_all_match_and_a_gone_secret_matches() {
        let route =
            spec(r#"{"queueUrl":"https://h/1/q","tags":{"team":"a","env":"prod"}}"#).unwrap();
        let tags = |pairs: &[(&str, &str)]| {
            SecretTags::Known(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert!(route.matches_tags(&tags(&[("team", "a"), ("env", "prod"), ("x", "y")])));
        assert!(!route.matches_tags(&tags(&[("team", "a")])));
        assert!(!route.matches_tags(&tags(&[("team", "A"), ("env", "prod")])));
        assert!(route.matches_tags(&SecretTags::Gone));
    }

    #[test]
    fn a_partial_arn_routes_by_its_name() {
        let message = NormalizedMessage {
            secret_bridge: 1,
            kind: "PutSecretValue".into(),
            account: None,
            region: None,
            name: "arn:aws:secretsmanager:us-east-1:012345678901:secret:prod/db".into(),
            arn: None,
            version_id: None,
            label: None,
            event_time: None,
        };
        assert_eq!(routing_name(&message), "prod/db");
    }
}
