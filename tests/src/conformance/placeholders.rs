//! `${...}` placeholders of case files (not `{{ }}`, which is Go-template syntax in `template`
//! cases): per-run names first, then what only AWS knows once the secrets exist.

use std::collections::HashMap;

/// What one case's placeholders resolve to.
#[derive(Debug, Default, Clone)]
pub struct Values {
    /// `${CASE}`: a prefix unique to the case and run (lowercase letters, digits, `-`).
    pub case: String,
    /// `${NAMESPACE}`: the case's namespace.
    pub namespace: String,
    /// `${CLASS}`: the controller class the runner's controller serves.
    pub class: String,
    /// `${REGION}`.
    pub region: String,
    /// AWS secret name → full ARN.
    pub arns: HashMap<String, String>,
    /// AWS secret name → VersionIds in creation order (0 = the first value).
    pub versions: HashMap<String, Vec<String>>,
}

impl Values {
    /// Substitutes every placeholder; an unknown one is an error naming it.
    pub fn substitute(&self, text: &str) -> Result<String, String> {
        // `$${` is a literal `${` (Go's regexp replacement syntax in `rewrite` targets).
        const LITERAL: &str = "\u{0}LITERAL-DOLLAR-BRACE\u{0}";
        let mut text = text.replace("$${", LITERAL);
        // Innermost first, so that placeholders nest: `${ARN:${CASE}db}`.
        while let Some(first) = text.find("${") {
            let close = text[first..]
                .find('}')
                .map(|i| first + i)
                .ok_or_else(|| format!("unterminated placeholder near {:?}", &text[first..]))?;
            let open = text[..close].rfind("${").unwrap_or(first);
            let resolved = self.resolve(&text[open + 2..close])?;
            text.replace_range(open..=close, &resolved);
        }
        Ok(text.replace(LITERAL, "${"))
    }

    fn resolve(&self, placeholder: &str) -> Result<String, String> {
        let (name, argument) = placeholder
            .split_once(':')
            .map_or((placeholder, None), |(n, a)| (n, Some(a)));
        let missing = || format!("${{{placeholder}}} needs a secret name");
        match name {
            "CASE" => Ok(self.case.clone()),
            "NAMESPACE" => Ok(self.namespace.clone()),
            "CLASS" => Ok(self.class.clone()),
            "REGION" => Ok(self.region.clone()),
            "ARN" => self.arn(argument.ok_or_else(missing)?),
            // AWS appends `-` and six random characters to the name to make the ARN.
            "PARTIAL_ARN" => {
                let arn = self.arn(argument.ok_or_else(missing)?)?;
                Ok(arn[..arn.len().saturating_sub(7)].to_owned())
            }
            "VERSION" => {
                let (secret, index) = argument
                    .ok_or_else(missing)?
                    .rsplit_once(':')
                    .ok_or_else(|| format!("${{{placeholder}}}: use ${{VERSION:<secret>:<n>}}"))?;
                let index: usize = index
                    .parse()
                    .map_err(|_| format!("${{{placeholder}}}: {index:?} is not a number"))?;
                self.versions
                    .get(secret)
                    .and_then(|v| v.get(index))
                    .cloned()
                    .ok_or_else(|| format!("${{{placeholder}}}: no such version (yet)"))
            }
            _ => Err(format!("unknown placeholder ${{{placeholder}}}")),
        }
    }

    fn arn(&self, secret: &str) -> Result<String, String> {
        self.arns
            .get(secret)
            .cloned()
            .ok_or_else(|| format!("no AWS secret {secret:?} in this case (yet)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_nested_placeholders() {
        let values = Values {
            case: "c1".into(),
            arns: HashMap::from([(
                "c1-db".into(),
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:c1-db-AbCdEf".into(),
            )]),
            versions: HashMap::from([("c1-db".into(), vec!["v0".into(), "v1".into()])]),
            ..Values::default()
        };
        assert_eq!(
            values.substitute("k: ${PARTIAL_ARN:${CASE}-db} v: ${VERSION:${CASE}-db:1} {{ .x }}"),
            Ok(
                "k: arn:aws:secretsmanager:us-east-1:123456789012:secret:c1-db v: v1 {{ .x }}"
                    .into()
            )
        );
        assert!(values.substitute("${NOPE}").is_err());
        assert_eq!(values.substitute("$${1}_x ${CASE}"), Ok("${1}_x c1".into()));
    }
}
