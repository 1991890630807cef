//! Why a sync failed, one variant per cause. Whether a failure is worth retrying soon is a
//! property of its cause ([`Error::is_transient`]); messages say what is wrong and where, and
//! never carry a secret value — including what the apiserver echoes back (see [`ApiError`]).

use kube::core::Status;

use crate::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ExternalSecret or its store is not valid: a person must change it.
    #[error("{0}")]
    Misconfigured(String),
    /// A field this controller does not implement (another provider, generators…).
    #[error("unsupported field: {0}")]
    Unsupported(String),
    /// An object the ExternalSecret or its store names does not exist (the store, a
    /// credentials Secret or key, a ServiceAccount, a Namespace).
    #[error("{0}")]
    NotFound(String),
    /// The credentials a store names are not there (yet): its credentials Secret or IRSA
    /// ServiceAccount is missing, as while it is being replaced. Worth retrying soon.
    #[error("{0}")]
    CredentialsUnavailable(String),
    /// The store is not `Ready` and the flood gate (`--flood-gate`) holds its ExternalSecrets
    /// back. Fixed by fixing the store; its next validation reconciles them.
    #[error("{0}")]
    StoreNotReady(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Mapping(#[from] secret_bridge::mapping::MappingError),
    /// The target Secret belongs to someone else, or cannot be changed (immutable).
    #[error("{0}")]
    Conflict(String),
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: ApiError,
    },
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube {
            action,
            source: ApiError::from(source),
        }
    }

    /// The `Ready=False` condition reason, as ESO names it.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Unsupported(_) => "Unsupported",
            _ => "SecretSyncedError",
        }
    }

    /// Whether retrying soon may succeed without anyone changing anything: the network, a
    /// throttle, an unavailable apiserver or AWS endpoint, credentials being replaced. An event whose refresh failed this
    /// way stays in the queue for a retry. Other failures need a person (a wrong key, a
    /// missing store, an invalid spec): the event is done with, and the ExternalSecret's own
    /// retries — which keep reading AWS while it is not Ready — take over.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::CredentialsUnavailable(_) => true,
            Error::Aws(aws) => aws.is_transient(),
            Error::Kube { source, .. } => source.is_transient(),
            Error::Misconfigured(_)
            | Error::Unsupported(_)
            | Error::NotFound(_)
            | Error::StoreNotReady(_)
            | Error::Mapping(_)
            | Error::Conflict(_) => false,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Misconfigured(_) => "spec",
            Error::Unsupported(_) => "unsupported",
            Error::NotFound(_) => "not_found",
            Error::CredentialsUnavailable(_) => "credentials",
            Error::StoreNotReady(_) => "store_not_ready",
            Error::Aws(aws) if aws.is_throttling() => "throttled",
            Error::Aws(_) => "aws",
            Error::Mapping(_) => "mapping",
            Error::Conflict(_) => "conflict",
            Error::Kube { source, .. } if source.is_transient() => "kubernetes_unavailable",
            Error::Kube { .. } => "kubernetes",
        }
    }
}

/// A Kubernetes API error with what the apiserver echoes of the request taken out.
///
/// A validation error quotes the rejected value (`Invalid value: "<value>"`), and a label or
/// annotation rendered from secret data is such a value. So for a rejected request (400, 422)
/// only the reason and the fields named are kept; other statuses keep their message (they
/// name objects and permissions, not values). The raw error is not kept at all, so neither
/// `Display` nor `Debug` can reach the value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status, when the apiserver answered.
    pub code: Option<u16>,
    message: String,
}

impl ApiError {
    /// Whether the apiserver (or the way to it) may answer differently soon: no answer, 5xx,
    /// 429 (priority and fairness), 409 (a write raced another).
    pub fn is_transient(&self) -> bool {
        match self.code {
            None => true,
            Some(code) => code >= 500 || code == 429 || code == 409,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }

    fn from_status(status: &Status) -> Self {
        let code = status.code;
        let message = if code == 400 || code == 422 {
            let fields: Vec<String> = status
                .details
                .as_ref()
                .map(|details| {
                    details
                        .causes
                        .iter()
                        .map(
                            |cause| match (cause.field.is_empty(), cause.reason.is_empty()) {
                                (false, false) => format!("{}: {}", cause.field, cause.reason),
                                (false, true) => cause.field.clone(),
                                _ => cause.reason.clone(),
                            },
                        )
                        .collect()
                })
                .unwrap_or_default();
            let reason = if status.reason.is_empty() {
                "Invalid"
            } else {
                status.reason.as_str()
            };
            if fields.is_empty() {
                format!("the apiserver refused the request ({code} {reason})")
            } else {
                format!(
                    "the apiserver refused the request ({code} {reason}): {}",
                    fields.join(", ")
                )
            }
        } else {
            format!("{} ({code} {})", status.message, status.reason)
        };
        ApiError {
            code: Some(code),
            message,
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) => ApiError::from_status(status),
            // Transport, TLS, serialization: nothing of the request's body is in these.
            other => ApiError {
                code: None,
                message: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status::failure(message, reason).with_code(code)
    }

    fn aws(code: &str) -> AwsError {
        AwsError {
            operation: "GetSecretValue",
            secret: "s".into(),
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn transience_is_decided_by_cause() {
        let transient = [
            Error::Aws(aws("ThrottlingException")),
            Error::Aws(aws("RequestFailed")),
            Error::Aws(aws("InternalServiceError")),
            Error::CredentialsUnavailable("Secret ns/aws-keys not found".into()),
            Error::kube("writing")(kube::Error::Api(Box::new(status(
                503,
                "ServiceUnavailable",
                "",
            )))),
            Error::kube("writing")(kube::Error::Api(Box::new(status(
                429,
                "TooManyRequests",
                "",
            )))),
            Error::kube("writing")(kube::Error::Api(Box::new(status(409, "Conflict", "")))),
        ];
        for error in &transient {
            assert!(error.is_transient(), "{error} should be transient");
        }
        let permanent = [
            Error::Misconfigured("bad".into()),
            Error::Unsupported("x".into()),
            Error::NotFound("SecretStore \"s\" not found".into()),
            Error::Conflict("immutable".into()),
            Error::Aws(aws("ResourceNotFoundException")),
            Error::Aws(aws("AccessDeniedException")),
            Error::Aws(aws("DecryptionFailure")),
            Error::kube("writing")(kube::Error::Api(Box::new(status(403, "Forbidden", "")))),
            Error::kube("writing")(kube::Error::Api(Box::new(status(422, "Invalid", "")))),
        ];
        for error in &permanent {
            assert!(!error.is_transient(), "{error} should be permanent");
        }
    }

    #[test]
    fn validation_errors_keep_fields_and_drop_values() {
        let marker = "MARKER-value-7f3a";
        let mut rejected = status(
            422,
            "Invalid",
            &format!("Secret \"app\" is invalid: metadata.labels: Invalid value: \"{marker}\""),
        );
        rejected.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: \"{marker}\""),
                field: "metadata.labels".into(),
            }],
            name: "app".into(),
            group: String::new(),
            kind: "secrets".into(),
            uid: String::new(),
            retry_after_seconds: 0,
        });
        let error = Error::kube("writing Secret ns/app")(kube::Error::Api(Box::new(rejected)));
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(marker), "{shown}");
        assert!(
            shown.contains("metadata.labels: FieldValueInvalid"),
            "{shown}"
        );
        let bad_request = status(400, "BadRequest", &format!("bad {marker}"));
        let error = Error::kube("writing")(kube::Error::Api(Box::new(bad_request)));
        assert!(!format!("{error} {error:?}").contains(marker));
    }

    #[test]
    fn other_statuses_keep_their_message() {
        let forbidden = status(403, "Forbidden", "secrets \"app\" is forbidden");
        let error = Error::kube("reading Secret ns/app")(kube::Error::Api(Box::new(forbidden)));
        assert_eq!(
            error.to_string(),
            "reading Secret ns/app: secrets \"app\" is forbidden (403 Forbidden)"
        );
    }
}
