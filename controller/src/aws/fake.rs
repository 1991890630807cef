//! A fake Secrets Manager for tests of the sync logic: secrets with versions and tags, found by
//! name, full ARN or partial ARN; filters matched as Secrets Manager matches them (each a
//! prefix); every call recorded.

use std::sync::Mutex;

use super::*;

#[derive(Clone)]
struct FakeVersion {
    id: String,
    stages: Vec<String>,
    string: Option<String>,
    binary: Option<Vec<u8>>,
}

#[derive(Clone)]
struct FakeSecret {
    name: String,
    arn: String,
    versions: Vec<FakeVersion>,
    tags: Vec<(String, String)>,
    /// Reads fail with this error code.
    failing: Option<String>,
}

#[derive(Default)]
pub struct FakeSource {
    secrets: Vec<FakeSecret>,
    /// BatchGetSecretValue fails as a whole (a policy without the permission).
    batch_denied: bool,
    /// Page size of ListSecrets and filtered BatchGetSecretValue.
    page_size: Option<usize>,
    calls: Mutex<Vec<String>>,
    /// GetSecretValue of this secret waits until the `Notify` is notified.
    held: Option<(String, std::sync::Arc<tokio::sync::Notify>)>,
    /// How long each BatchGetSecretValue takes.
    batch_latency: std::time::Duration,
    /// BatchGetSecretValue calls under way now, and the most at once so far.
    batches_under_way: std::sync::atomic::AtomicUsize,
    most_batches_at_once: std::sync::atomic::AtomicUsize,
}

pub const ACCOUNT_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

impl FakeSource {
    fn entry(&mut self, name: &str) -> &mut FakeSecret {
        if let Some(at) = self.secrets.iter().position(|s| s.name == name) {
            return &mut self.secrets[at];
        }
        self.secrets.push(FakeSecret {
            name: name.into(),
            arn: format!("{ACCOUNT_ARN}{name}-AbCdEf"),
            versions: Vec::new(),
            tags: Vec::new(),
            failing: None,
        });
        self.secrets.last_mut().expect("just pushed")
    }

    /// A new `AWSCURRENT` version holding `text` (the previous current one becomes `AWSPREVIOUS`).
    pub fn secret(self, name: &str, text: &str) -> Self {
        self.put(name, Some(text.into()), None, &[])
    }

    pub fn binary(self, name: &str, bytes: &[u8]) -> Self {
        self.put(name, None, Some(bytes.to_vec()), &[])
    }

    /// A version with extra staging labels.
    pub fn labelled(self, name: &str, text: &str, labels: &[&str]) -> Self {
        self.put(name, Some(text.into()), None, labels)
    }

    fn put(
        mut self,
        name: &str,
        string: Option<String>,
        binary: Option<Vec<u8>>,
        labels: &[&str],
    ) -> Self {
        let secret = self.entry(name);
        for version in &mut secret.versions {
            version.stages.retain(|s| s != "AWSPREVIOUS");
            if let Some(current) = version.stages.iter_mut().find(|s| *s == "AWSCURRENT") {
                *current = "AWSPREVIOUS".into();
            }
        }
        let id = format!("{name}-v{}", secret.versions.len() + 1);
        let mut stages = vec!["AWSCURRENT".to_owned()];
        stages.extend(labels.iter().map(|l| (*l).to_owned()));
        secret.versions.push(FakeVersion {
            id,
            stages,
            string,
            binary,
        });
        self
    }

    pub fn tags(mut self, name: &str, tags: &[(&str, &str)]) -> Self {
        self.entry(name).tags = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    pub fn failing(mut self, name: &str, code: &str) -> Self {
        self.entry(name).failing = Some(code.into());
        self
    }

    pub fn without_batch(mut self) -> Self {
        self.batch_denied = true;
        self
    }

    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = Some(size);
        self
    }

    /// GetSecretValue of `name` waits until `release` is notified.
    pub fn holding(mut self, name: &str, release: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.held = Some((name.into(), release));
        self
    }

    /// Each BatchGetSecretValue takes `latency`.
    pub fn batch_latency(mut self, latency: std::time::Duration) -> Self {
        self.batch_latency = latency;
        self
    }

    /// The most BatchGetSecretValue calls under way at once since the start, or since
    /// [`FakeSource::count_batches_at_once_afresh`].
    pub fn most_batches_at_once(&self) -> usize {
        self.most_batches_at_once
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts the most at once from the calls under way now.
    pub fn count_batches_at_once_afresh(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.most_batches_at_once
            .store(self.batches_under_way.load(SeqCst), SeqCst);
    }

    /// Every call made, as `Operation argument`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, operation: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(operation))
            .count()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn find(&self, operation: &'static str, id: &str) -> Result<&FakeSecret, AwsError> {
        let error = |code: &str, message: &str| AwsError {
            operation,
            secret: id.into(),
            code: code.into(),
            message: message.into(),
        };
        let secret = self
            .secrets
            .iter()
            .find(|s| {
                s.name == id || s.arn == id || id.strip_prefix(ACCOUNT_ARN) == Some(s.name.as_str())
            })
            .ok_or_else(|| {
                error(
                    "ResourceNotFoundException",
                    "Secrets Manager can't find the specified secret.",
                )
            })?;
        match &secret.failing {
            Some(code) => Err(error(code, "failing as the test asks")),
            None => Ok(secret),
        }
    }

    fn value(
        &self,
        operation: &'static str,
        id: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        let secret = self.find(operation, id)?;
        let found = secret.versions.iter().find(|v| match version {
            VersionSelector::Stage(stage) => v.stages.contains(stage),
            VersionSelector::Id(wanted) => v.id == *wanted,
        });
        let Some(version) = found else {
            return Err(AwsError {
                operation,
                secret: id.into(),
                code: "ResourceNotFoundException".into(),
                message: "Secrets Manager can't find the specified secret value.".into(),
            });
        };
        Ok(SecretValue {
            name: secret.name.clone(),
            arn: secret.arn.clone(),
            version_id: version.id.clone(),
            string: version.string.clone(),
            binary: version.binary.clone(),
        })
    }

    fn selected(&self, filters: &[SecretFilter]) -> Vec<&FakeSecret> {
        let any_starts = |candidates: Vec<&str>, values: &[String]| {
            values
                .iter()
                .any(|v| candidates.iter().any(|c| c.starts_with(v.as_str())))
        };
        self.secrets
            .iter()
            .filter(|s| {
                filters.iter().all(|f| match f.key {
                    FilterKey::Name => any_starts(vec![&s.name], &f.values),
                    FilterKey::TagKey => {
                        any_starts(s.tags.iter().map(|t| t.0.as_str()).collect(), &f.values)
                    }
                    FilterKey::TagValue => {
                        any_starts(s.tags.iter().map(|t| t.1.as_str()).collect(), &f.values)
                    }
                })
            })
            .collect()
    }

    fn page<T: Clone>(&self, items: &[T], token: Option<&str>) -> (Vec<T>, Option<String>) {
        let size = self.page_size.unwrap_or(BATCH_SIZE);
        let start: usize = token.map_or(0, |t| t.parse().unwrap());
        let end = (start + size).min(items.len());
        let next = (end < items.len()).then(|| end.to_string());
        (items[start..end].to_vec(), next)
    }
}

impl SecretsSource for FakeSource {
    async fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        self.record(format!("GetSecretValue {key}"));
        if let Some((held, release)) = &self.held
            && held == key
        {
            release.notified().await;
        }
        self.value("GetSecretValue", key, version)
    }

    async fn describe_secret(&self, key: &str) -> Result<SecretMetadata, AwsError> {
        self.record(format!("DescribeSecret {key}"));
        let secret = self.find("DescribeSecret", key)?;
        Ok(SecretMetadata {
            name: secret.name.clone(),
            arn: secret.arn.clone(),
            tags: secret.tags.clone(),
        })
    }

    async fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> Result<BatchPage, AwsError> {
        self.record(format!("BatchGetSecretValue {}", described(selection)));
        if !self.batch_latency.is_zero() {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.batches_under_way.fetch_add(1, SeqCst) + 1;
            self.most_batches_at_once.fetch_max(now, SeqCst);
            tokio::time::sleep(self.batch_latency).await;
            self.batches_under_way.fetch_sub(1, SeqCst);
        }
        if self.batch_denied {
            return Err(AwsError {
                operation: "BatchGetSecretValue",
                secret: described(selection),
                code: "AccessDeniedException".into(),
                message: "not authorized to perform: secretsmanager:BatchGetSecretValue".into(),
            });
        }
        let current = VersionSelector::current();
        let mut page = BatchPage::default();
        match selection {
            BatchSelection::Ids(ids) => {
                assert!(ids.len() <= BATCH_SIZE, "at most 20 ids a call");
                for id in ids {
                    match self.value("BatchGetSecretValue", id, &current) {
                        Ok(value) => page.values.push(value),
                        Err(error) => page.errors.push(error),
                    }
                }
            }
            BatchSelection::Filters(filters) => {
                let names: Vec<String> = self
                    .selected(filters)
                    .iter()
                    .map(|s| s.name.clone())
                    .collect();
                let (names, next) = self.page(&names, next_token);
                page.next_token = next;
                for name in names {
                    match self.value("BatchGetSecretValue", &name, &current) {
                        Ok(value) => page.values.push(value),
                        Err(error) => page.errors.push(error),
                    }
                }
            }
        }
        Ok(page)
    }

    async fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> Result<ListPage, AwsError> {
        self.record(format!("ListSecrets {}", describe_filters(filters)));
        let names: Vec<String> = self
            .selected(filters)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let (names, next_token) = self.page(&names, next_token);
        Ok(ListPage { names, next_token })
    }
}
