//! JSON logs shaped like ESO's (controller-runtime's zap logger), so that queries written for
//! ESO work: one flat object per line with `ts` (Unix seconds), `level`, `logger`, a stable
//! `msg`, the event's fields at the top level, and the object reconciled as
//! `"ExternalSecret": {"name": …, "namespace": …}` (or `ClusterExternalSecret`).

use std::fmt;

use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for `--log-format json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EsoJson;

impl<S, N> FormatEvent<S, N> for EsoJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let line = log_line(now.as_secs_f64(), event);
        writeln!(writer, "{line}")
    }
}

/// The JSON object of one event at `ts`.
fn log_line(ts: f64, event: &Event<'_>) -> Value {
    let mut line = Map::new();
    line.insert("ts".into(), json!(ts));
    line.insert("level".into(), json!(level(event.metadata().level())));
    line.insert("logger".into(), json!(event.metadata().target()));
    let mut fields = Fields::default();
    event.record(&mut fields);
    line.insert("msg".into(), json!(fields.message.unwrap_or_default()));
    for (key, value) in fields.values {
        line.entry(key).or_insert(value);
    }
    for (kind, text) in fields.objects {
        let namespace = line.get("namespace").and_then(Value::as_str);
        let object = object_json(kind, &text, namespace);
        line.insert(kind.into(), object);
    }
    Value::Object(line)
}

/// zap's level names.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `{"name", "namespace"}` from an object reference as our logs print it: kube's
/// `Kind.version.group/name.namespace` (a namespace has no dots, so the last dot splits
/// them), or a bare name with the namespace from the event's `namespace` field. A
/// ClusterExternalSecret has only a name.
fn object_json(kind: &str, text: &str, namespace_field: Option<&str>) -> Value {
    if kind == "ClusterExternalSecret" {
        let name = text.split_once('/').map_or(text, |(_, name)| name);
        return json!({ "name": name });
    }
    match text.split_once('/') {
        Some((_, rest)) => match rest.rsplit_once('.') {
            Some((name, namespace)) => json!({"name": name, "namespace": namespace}),
            None => json!({"name": rest}),
        },
        None => match namespace_field {
            Some(namespace) => json!({"name": text, "namespace": namespace}),
            None => json!({"name": text}),
        },
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(String, Value)>,
    /// (controller-runtime's key, the field's text) for the object fields.
    objects: Vec<(&'static str, String)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        let object_kind = match field.name() {
            "externalsecret" => Some("ExternalSecret"),
            "clusterexternalsecret" => Some("ClusterExternalSecret"),
            _ => None,
        };
        match (field.name(), object_kind, value) {
            ("message", _, Value::String(text)) => self.message = Some(text),
            (_, Some(kind), Value::String(text)) => self.objects.push((kind, text)),
            (name, _, value) => self.values.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, json!(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, json!(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, json!(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, json!(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add(field, json!(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use kube::runtime::reflector::ObjectRef;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::api::ExternalSecret;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes, each parsed.
    fn logged(log: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(Level::DEBUG)
            .event_format(EsoJson)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect(line))
            .collect()
    }

    #[test]
    fn fields_are_flat_and_the_object_is_as_controller_runtime_logs_it() {
        let object = ObjectRef::<ExternalSecret>::new("db.credentials").within("team-a");
        let lines = logged(|| {
            tracing::warn!(
                externalsecret = %object,
                error = "GetSecretValue \"db\": AccessDeniedException: denied",
                kind = "aws",
                retry_in_s = 5u64,
                "sync failed"
            );
        });
        let line = &lines[0];
        assert_eq!(line["msg"], "sync failed", "{line}");
        assert_eq!(line["level"], "warn");
        assert_eq!(
            line["ExternalSecret"],
            json!({"name": "db.credentials", "namespace": "team-a"})
        );
        assert_eq!(line["kind"], "aws");
        assert_eq!(line["retry_in_s"], 5);
        assert!(line["error"].as_str().unwrap().contains("AccessDenied"));
        assert!(line["ts"].as_f64().unwrap() > 1.6e9, "{line}");
        assert!(line["logger"].as_str().unwrap().contains("logs"), "{line}");
        assert!(line.get("fields").is_none() && line.get("message").is_none());
        assert!(line.get("externalsecret").is_none());
    }

    #[test]
    fn a_bare_name_takes_the_namespace_field_and_cluster_objects_have_none() {
        let lines = logged(|| {
            tracing::info!(
                clusterexternalsecret = "shared",
                namespace = "team-b",
                externalsecret = "app",
                "ExternalSecret deleted: namespace no longer selected"
            );
        });
        let line = &lines[0];
        assert_eq!(
            line["ExternalSecret"],
            json!({"name": "app", "namespace": "team-b"})
        );
        assert_eq!(line["ClusterExternalSecret"], json!({"name": "shared"}));
        let cluster = ObjectRef::<crate::api::ClusterExternalSecret>::new("shared");
        assert_eq!(
            object_json("ClusterExternalSecret", &cluster.to_string(), None),
            json!({"name": "shared"})
        );
    }
}
