//! How Secrets Manager names a secret: by name, by full ARN (name plus a 6-character random
//! suffix) or by partial ARN (no suffix). Two references denote the same secret when they share
//! a candidate name; a partial ARN whose name happens to end in `-XXXXXX` yields one extra
//! candidate, which can at most cause a harmless extra refresh.

/// A parsed Secrets Manager ARN: `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:TAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    /// Name, with the random suffix when the ARN is a full one.
    pub tail: &'a str,
}

impl<'a> SecretArn<'a> {
    pub fn parse(input: &'a str) -> Option<Self> {
        let mut parts = input.splitn(7, ':');
        let (arn, partition, service, region, account, resource, tail) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        (arn == "arn" && service == "secretsmanager" && resource == "secret" && !tail.is_empty())
            .then_some(SecretArn {
                partition,
                region,
                account,
                tail,
            })
    }

    /// The tail without the random suffix, when it has the suffix's shape.
    pub fn name_without_suffix(&self) -> Option<&'a str> {
        strip_random_suffix(self.tail)
    }
}

fn strip_random_suffix(tail: &str) -> Option<&str> {
    let (name, suffix) = tail.rsplit_once('-')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) && !name.is_empty())
        .then_some(name)
}

/// The ARN partition of `region`: `aws-cn` for China, `aws-us-gov` for GovCloud, else `aws`.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// The secret names a reference (name, full ARN or partial ARN) may denote.
pub fn candidate_names(reference: &str) -> impl Iterator<Item = &str> {
    let (first, second) = match SecretArn::parse(reference) {
        Some(arn) => (arn.tail, arn.name_without_suffix()),
        None => (reference, None),
    };
    std::iter::once(first).chain(second)
}

/// Whether two references (names or ARNs) may denote the same secret.
pub fn may_match(a: &str, b: &str) -> bool {
    candidate_names(a).any(|x| candidate_names(b).any(|y| x == y))
}

/// Whether `id`, as a request named it (a name, full ARN or partial ARN), is exactly the
/// secret called `name` with ARN `arn`: unlike [`may_match`], a partial ARN must be the full
/// ARN without its random suffix, so a batch answer is never given to another secret.
pub fn identifies(id: &str, name: &str, arn: &str) -> bool {
    if id == name || id == arn {
        return true;
    }
    id.starts_with("arn:")
        && arn
            .strip_prefix(id)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|suffix| suffix.len() == 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_a_secret_by_name_full_or_partial_arn_only() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db-AbCdEf";
        assert!(identifies("team/db", "team/db", arn));
        assert!(identifies(arn, "team/db", arn));
        assert!(identifies(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db",
            "team/db",
            arn
        ));
        assert!(!identifies("team/d", "team/db", arn));
        assert!(!identifies(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:team",
            "team/db",
            arn
        ));
        assert!(!identifies("db", "team/db", arn));
    }

    const FULL: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbC123";

    #[test]
    fn parses_full_arn() {
        let arn = SecretArn::parse(FULL).unwrap();
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.account, "123456789012");
        assert_eq!(arn.tail, "app/db-AbC123");
        assert_eq!(arn.name_without_suffix(), Some("app/db"));
    }

    #[test]
    fn rejects_other_arns_and_names() {
        assert!(SecretArn::parse("app-secret").is_none());
        assert!(SecretArn::parse("arn:aws:ssm:us-east-1:1:parameter/x").is_none());
        assert!(SecretArn::parse("arn:aws:secretsmanager:us-east-1:1:secret:").is_none());
    }

    #[test]
    fn names_and_arns_match_each_other() {
        assert!(may_match("app/db", FULL));
        assert!(may_match(FULL, "app/db"));
        assert!(may_match(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db",
            FULL
        ));
        assert!(
            may_match("app/db-AbC123", FULL),
            "a name may itself end like a suffix"
        );
        assert!(!may_match("app/db2", FULL));
        assert!(!may_match("app", "app/db"));
    }

    #[test]
    fn plain_names_are_never_stripped() {
        assert_eq!(
            candidate_names("db-prod01").collect::<Vec<_>>(),
            ["db-prod01"]
        );
        assert!(!may_match("db-prod01", "db"));
    }
}
