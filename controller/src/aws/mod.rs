//! AWS Secrets Manager access: a narrow trait ([`SecretsSource`]) that the sync logic depends on,
//! and its implementation on the AWS SDK. Clients and credentials live in [`crate::aws::credentials`].

pub mod coalesce;
pub mod credentials;

use std::fmt;
use std::future::Future;

use crate::telemetry::aws_calls::AwsCalls;
use crate::telemetry::eso::PROVIDER_AWS_SECRETS_MANAGER;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

/// Which version of a secret to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    Stage(String),
    Id(String),
}

impl VersionSelector {
    /// `AWSCURRENT`, the version read when none is named.
    pub fn current() -> Self {
        VersionSelector::Stage("AWSCURRENT".into())
    }

    /// ESO's `remoteRef.version`: empty means `AWSCURRENT`, `uuid/<id>` a VersionId, else a stage.
    pub fn from_remote_ref(version: Option<&str>) -> Self {
        match version.filter(|v| !v.is_empty()) {
            None => VersionSelector::Stage("AWSCURRENT".into()),
            Some(v) => match v.strip_prefix("uuid/") {
                Some(id) => VersionSelector::Id(id.into()),
                None => VersionSelector::Stage(v.into()),
            },
        }
    }
}

/// A secret's value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq)]
pub struct SecretValue {
    pub name: String,
    pub arn: String,
    pub version_id: String,
    pub string: Option<String>,
    pub binary: Option<Vec<u8>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .field("version_id", &self.version_id)
            .field("string", &self.string.as_ref().map(|_| "<redacted>"))
            .field("binary", &self.binary.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An AWS call that failed: the service's error code and message (never a secret value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {secret:?}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub secret: String,
    pub code: String,
    pub message: String,
}

impl AwsError {
    fn from_sdk<E, R>(operation: &'static str, secret: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let (code, message) = secret_bridge::aws::error_parts(&error);
        AwsError {
            operation,
            secret: secret.to_owned(),
            code,
            message,
        }
    }

    /// Throttled by AWS (`ThrottlingException`, `TooManyRequestsException`, or the SDK's
    /// own throttling codes).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
        )
    }

    /// Whether a retry soon may succeed: throttling, the network, AWS's own failures.
    /// A missing or deleted secret, a denied permission or a key that cannot decrypt needs a
    /// person.
    pub fn is_transient(&self) -> bool {
        !self.is_deleted()
            && !matches!(
                self.code.as_str(),
                "AccessDeniedException"
                    | "DecryptionFailure"
                    | "InvalidParameterException"
                    | "ValidationException"
            )
    }

    pub fn is_not_found(&self) -> bool {
        self.code == "ResourceNotFoundException"
    }

    /// The secret does not exist, or is scheduled for deletion (AWS refuses reads of it with
    /// `InvalidRequestException`).
    pub fn is_deleted(&self) -> bool {
        let message = self.message.to_lowercase();
        let scheduled = self.code == "InvalidRequestException"
            && (message.contains("deleted") || message.contains("marked for deletion"));
        self.is_not_found() || scheduled
    }
}

/// A secret's name, ARN and tags (DescribeSecret), for `metadataPolicy: Fetch`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecretMetadata {
    pub name: String,
    pub arn: String,
    pub tags: Vec<(String, String)>,
}

/// A ListSecrets / BatchGetSecretValue filter, as ESO builds them for `dataFrom.find`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFilter {
    pub key: FilterKey,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKey {
    Name,
    TagKey,
    TagValue,
}

/// What one BatchGetSecretValue call asks for.
#[derive(Debug, Clone, Copy)]
pub enum BatchSelection<'a> {
    /// At most [`BATCH_SIZE`] secret ids (names or ARNs).
    Ids(&'a [String]),
    /// Every secret the filters select, a page at a time.
    Filters(&'a [SecretFilter]),
}

/// The most secret ids one BatchGetSecretValue call takes.
pub const BATCH_SIZE: usize = 20;

/// One page of BatchGetSecretValue: the values read and, per secret, what failed.
#[derive(Debug, Default)]
pub struct BatchPage {
    pub values: Vec<SecretValue>,
    /// Each with the failing secret id in `secret`.
    pub errors: Vec<AwsError>,
    pub next_token: Option<String>,
}

/// One page of ListSecrets: secret names.
#[derive(Debug, Default)]
pub struct ListPage {
    pub names: Vec<String>,
    pub next_token: Option<String>,
}

/// What the sync logic needs from Secrets Manager.
pub trait SecretsSource: Send + Sync {
    fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> impl Future<Output = Result<SecretValue, AwsError>> + Send;

    fn describe_secret(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<SecretMetadata, AwsError>> + Send;

    /// The `AWSCURRENT` values of several secrets in one call.
    fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<BatchPage, AwsError>> + Send;

    fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, AwsError>> + Send;
}

/// A shared source is a source (the coalescer holds one per AWS client).
impl<T: SecretsSource> SecretsSource for std::sync::Arc<T> {
    fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> impl Future<Output = Result<SecretValue, AwsError>> + Send {
        (**self).get_secret_value(key, version)
    }

    fn describe_secret(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<SecretMetadata, AwsError>> + Send {
        (**self).describe_secret(key)
    }

    fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<BatchPage, AwsError>> + Send {
        (**self).batch_get_secret_value(selection, next_token)
    }

    fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, AwsError>> + Send {
        (**self).list_secrets(filters, next_token)
    }
}

/// A source whose calls are counted by operation and result (`secret_bridge_aws_calls_total`
/// and ESO's `externalsecret_provider_api_calls_count`): what AWS bills for.
pub struct Counted<S> {
    pub source: S,
    pub calls: AwsCalls,
}

impl<S> Counted<S> {
    fn count<T>(&self, operation: &'static str, result: &Result<T, AwsError>) {
        self.calls
            .record(PROVIDER_AWS_SECRETS_MANAGER, operation, result.is_ok());
    }
}

impl<S: SecretsSource> SecretsSource for Counted<S> {
    async fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        let result = self.source.get_secret_value(key, version).await;
        self.count("GetSecretValue", &result);
        result
    }

    async fn describe_secret(&self, key: &str) -> Result<SecretMetadata, AwsError> {
        let result = self.source.describe_secret(key).await;
        self.count("DescribeSecret", &result);
        result
    }

    async fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> Result<BatchPage, AwsError> {
        let result = self
            .source
            .batch_get_secret_value(selection, next_token)
            .await;
        self.count("BatchGetSecretValue", &result);
        result
    }

    async fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> Result<ListPage, AwsError> {
        let result = self.source.list_secrets(filters, next_token).await;
        self.count("ListSecrets", &result);
        result
    }
}

fn sdk_filter(filter: &SecretFilter) -> Filter {
    let key = match filter.key {
        FilterKey::Name => FilterNameStringType::Name,
        FilterKey::TagKey => FilterNameStringType::TagKey,
        FilterKey::TagValue => FilterNameStringType::TagValue,
    };
    Filter::builder()
        .key(key)
        .set_values(Some(filter.values.clone()))
        .build()
}

/// How a batch or list names what it asked for, in errors.
fn described(selection: BatchSelection<'_>) -> String {
    match selection {
        BatchSelection::Ids(ids) => ids.join(","),
        BatchSelection::Filters(filters) => describe_filters(filters),
    }
}

fn describe_filters(filters: &[SecretFilter]) -> String {
    filters
        .iter()
        .map(|f| format!("{:?}={}", f.key, f.values.join("|")))
        .collect::<Vec<_>>()
        .join(",")
}

impl SecretsSource for aws_sdk_secretsmanager::Client {
    async fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        let request = self.get_secret_value().secret_id(key);
        let request = match version {
            VersionSelector::Stage(stage) => request.version_stage(stage),
            VersionSelector::Id(id) => request.version_id(id),
        };
        let output = request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", key, e))?;
        Ok(SecretValue {
            name: output.name.unwrap_or_default(),
            arn: output.arn.unwrap_or_default(),
            version_id: output.version_id.unwrap_or_default(),
            string: output.secret_string,
            binary: output.secret_binary.map(|b| b.into_inner()),
        })
    }

    async fn describe_secret(&self, key: &str) -> Result<SecretMetadata, AwsError> {
        let output = self
            .describe_secret()
            .secret_id(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecret", key, e))?;
        Ok(SecretMetadata {
            name: output.name.unwrap_or_default(),
            arn: output.arn.unwrap_or_default(),
            tags: output
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
                .collect(),
        })
    }

    async fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> Result<BatchPage, AwsError> {
        let request = self
            .batch_get_secret_value()
            .set_next_token(next_token.map(str::to_owned));
        let request = match selection {
            BatchSelection::Ids(ids) => request.set_secret_id_list(Some(ids.to_vec())),
            BatchSelection::Filters(filters) => request
                .set_filters(Some(filters.iter().map(sdk_filter).collect()))
                .max_results(BATCH_SIZE as i32),
        };
        let output = request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("BatchGetSecretValue", &described(selection), e))?;
        Ok(BatchPage {
            values: output
                .secret_values
                .unwrap_or_default()
                .into_iter()
                .map(|entry| SecretValue {
                    name: entry.name.unwrap_or_default(),
                    arn: entry.arn.unwrap_or_default(),
                    version_id: entry.version_id.unwrap_or_default(),
                    string: entry.secret_string,
                    binary: entry.secret_binary.map(|b| b.into_inner()),
                })
                .collect(),
            errors: output
                .errors
                .unwrap_or_default()
                .into_iter()
                .map(|error| AwsError {
                    operation: "BatchGetSecretValue",
                    secret: error.secret_id.unwrap_or_default(),
                    code: error.error_code.unwrap_or_else(|| "Unknown".into()),
                    message: error.message.unwrap_or_default(),
                })
                .collect(),
            next_token: output.next_token,
        })
    }

    async fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> Result<ListPage, AwsError> {
        let output = self
            .list_secrets()
            .set_filters(Some(filters.iter().map(sdk_filter).collect()))
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListSecrets", &describe_filters(filters), e))?;
        Ok(ListPage {
            names: output
                .secret_list
                .unwrap_or_default()
                .into_iter()
                .filter_map(|entry| entry.name)
                .collect(),
            next_token: output.next_token,
        })
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_selector_follows_eso() {
        assert_eq!(
            VersionSelector::from_remote_ref(None),
            VersionSelector::Stage("AWSCURRENT".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("")),
            VersionSelector::Stage("AWSCURRENT".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("AWSPREVIOUS")),
            VersionSelector::Stage("AWSPREVIOUS".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("uuid/abc")),
            VersionSelector::Id("abc".into())
        );
    }

    fn aws_error(code: &str, message: &str) -> AwsError {
        AwsError {
            operation: "GetSecretValue",
            secret: "s".into(),
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn deleted_secrets_are_recognized() {
        assert!(aws_error("ResourceNotFoundException", "").is_deleted());
        assert!(
            aws_error(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion."
            )
            .is_deleted()
        );
        assert!(!aws_error("InvalidRequestException", "bad parameter").is_deleted());
        assert!(!aws_error("ThrottlingException", "Rate exceeded").is_deleted());
    }

    #[test]
    fn debug_output_hides_values_and_keys() {
        let value = SecretValue {
            name: "n".into(),
            arn: "a".into(),
            version_id: "v".into(),
            string: Some("hunter2".into()),
            binary: Some(b"hunter3".to_vec()),
        };
        let printed = format!("{value:?}");
        assert!(!printed.contains("hunter"), "{printed}");
    }
}
