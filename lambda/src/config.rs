//! The function's configuration, read from the environment once, at cold start.
//!
//! - `ROUTES`: a JSON array of routes (see [`crate::routing`]), for example
//!   `[{"queueUrl":"https://sqs.us-east-1.amazonaws.com/111122223333/cluster-a","namePrefix":"app/"},
//!   {"queueArn":"arn:aws:sqs:eu-west-1:444455556666:cluster-b","nameRegex":"^prod-","tags":{"team":"b"}}]`.
//! - `FAN_OUT_QUEUE_ARNS`: used only when `ROUTES` is unset: comma-separated queue ARNs, each of
//!   which receives every event. The CloudFormation template sets it to the queues the function
//!   may send to.

use crate::Error;
use crate::routing::{Destination, Route, RouteSpec, Router};

pub const ROUTES: &str = "ROUTES";
pub const FAN_OUT_QUEUE_ARNS: &str = "FAN_OUT_QUEUE_ARNS";

/// The routes from the process environment.
pub fn router_from_env() -> Result<Router, Error> {
    router_from(|name| std::env::var(name).ok())
}

/// The routes from `var` (the environment, or a map in tests).
pub fn router_from(var: impl Fn(&str) -> Option<String>) -> Result<Router, Error> {
    let set = |name| var(name).filter(|value: &String| !value.trim().is_empty());
    if let Some(routes) = set(ROUTES) {
        return parse_routes(&routes);
    }
    if let Some(arns) = set(FAN_OUT_QUEUE_ARNS) {
        return parse_queue_arns(&arns);
    }
    Err(Error::Config {
        variable: ROUTES,
        message: format!(
            "not set: set {ROUTES} to a JSON array of routes, e.g. \
             [{{\"queueUrl\":\"https://sqs.us-east-1.amazonaws.com/111122223333/cluster-a\",\"namePrefix\":\"app/\"}}], \
             or {FAN_OUT_QUEUE_ARNS} to comma-separated queue ARNs that receive every event"
        ),
    })
}

fn parse_routes(text: &str) -> Result<Router, Error> {
    let invalid = |message: String| Error::Config {
        variable: ROUTES,
        message,
    };
    let specs: Vec<RouteSpec> = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "not a JSON array of routes ({{\"queueUrl\" or \"queueArn\", \"namePrefix\"?, \"nameRegex\"?, \"tags\"?}}): {e}"
        ))
    })?;
    if specs.is_empty() {
        return Err(invalid(
            "the array is empty: name at least one route".into(),
        ));
    }
    let routes = specs
        .into_iter()
        .enumerate()
        .map(|(index, spec)| {
            Route::from_spec(spec).map_err(|message| invalid(format!("route {index}: {message}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Router::new(routes))
}

fn parse_queue_arns(text: &str) -> Result<Router, Error> {
    let routes = text
        .split(',')
        .map(str::trim)
        .filter(|arn| !arn.is_empty())
        .map(|arn| {
            Destination::from_arn(arn)
                .map(Route::everything)
                .map_err(|message| Error::Config {
                    variable: FAN_OUT_QUEUE_ARNS,
                    message,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if routes.is_empty() {
        return Err(Error::Config {
            variable: FAN_OUT_QUEUE_ARNS,
            message: "names no queue".into(),
        });
    }
    Ok(Router::new(routes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn router(vars: &[(&str, &str)]) -> Result<Router, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        router_from(|name| vars.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        router(vars).unwrap_err().to_string()
    }

    #[test]
    fn reads_routes() {
        let router = router(&[(
            ROUTES,
            r#"[{"queueUrl":"https://sqs.us-east-1.amazonaws.com/1/a","namePrefix":"app/"},
                {"queueArn":"arn:aws:sqs:eu-west-1:2:b","nameRegex":"^prod-","tags":{"team":"b"}},
                {"queueUrl":"http://127.0.0.1:5000/1/c"}]"#,
        )])
        .unwrap();
        assert_eq!(router.routes().len(), 3);
        assert!(router.uses_tags());
        assert_eq!(
            router.routes()[1].destination.region.as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn routes_win_over_queue_arns() {
        let router = router(&[
            (ROUTES, r#"[{"queueUrl":"https://h/1/a"}]"#),
            (FAN_OUT_QUEUE_ARNS, "arn:aws:sqs:us-east-1:1:b"),
        ])
        .unwrap();
        assert_eq!(router.routes().len(), 1);
        assert_eq!(router.routes()[0].destination.url, "https://h/1/a");
    }

    #[test]
    fn queue_arns_alone_send_everything_everywhere() {
        let router = router(&[(
            FAN_OUT_QUEUE_ARNS,
            "arn:aws:sqs:us-east-1:1:a, arn:aws:sqs:us-west-2:2:b,",
        )])
        .unwrap();
        assert_eq!(router.routes().len(), 2);
        assert!(!router.uses_tags());
        assert_eq!(
            router.routes()[1].destination.url,
            "https://sqs.us-west-2.amazonaws.com/2/b"
        );
    }

    #[test]
    fn errors_name_the_variable_and_the_route() {
        assert!(error(&[]).starts_with("ROUTES: not set"));
        assert!(error(&[(ROUTES, "  ")]).starts_with("ROUTES: not set"));
        assert!(error(&[(ROUTES, "[]")]).starts_with("ROUTES: the array is empty"));
        let typo = error(&[(ROUTES, r#"[{"queueUrl":"https://h/1/a","prefix":"x"}]"#)]);
        assert!(
            typo.starts_with("ROUTES: not a JSON array of routes"),
            "{typo}"
        );
        assert!(typo.contains("unknown field `prefix`"), "{typo}");
        let regex = error(&[(
            ROUTES,
            r#"[{"queueUrl":"https://h/1/a"},{"queueUrl":"https://h/1/b","nameRegex":"[a-"}]"#,
        )]);
        assert!(
            regex.starts_with("ROUTES: route 1: nameRegex \"[a-\""),
            "{regex}"
        );
        let arn = error(&[(
            FAN_OUT_QUEUE_ARNS,
            "arn:aws:sqs:us-east-1:1:a,https://h/1/b",
        )]);
        assert!(
            arn.starts_with("FAN_OUT_QUEUE_ARNS: \"https://h/1/b\" is not an SQS queue ARN"),
            "{arn}"
        );
        assert!(
            error(&[(FAN_OUT_QUEUE_ARNS, ",")]).starts_with("FAN_OUT_QUEUE_ARNS: names no queue")
        );
    }
}
