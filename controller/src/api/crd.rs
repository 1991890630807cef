//! The CRDs, generated from the types and committed under `infra/crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::{ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore};

/// Every served version besides the stored `v1`; their schema is the same.
const ALSO_SERVED: &[&str] = &["v1beta1"];

/// The CRDs with their file names under `infra/crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        (
            "externalsecrets.yaml",
            with_served_versions(ExternalSecret::crd()),
        ),
        (
            "secretstores.yaml",
            with_served_versions(SecretStore::crd()),
        ),
        (
            "clustersecretstores.yaml",
            with_served_versions(ClusterSecretStore::crd()),
        ),
        (
            "clusterexternalsecrets.yaml",
            with_served_versions(ClusterExternalSecret::crd()),
        ),
    ]
}

/// The label that tells our CRDs from ESO's (same names): `scripts/install-crds` replaces only
/// CRDs that carry it, or carry no other owner's marks.
pub const OWNER_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "secret-bridge");

fn with_served_versions(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata.labels = Some(
        [OWNER_LABEL]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
    );
    if let Some(schema) = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
    {
        not_nullable_where_validated(schema);
    }
    let stored = crd.spec.versions[0].clone();
    for name in ALSO_SERVED {
        let mut version = stored.clone();
        version.name = (*name).to_owned();
        version.storage = false;
        crd.spec.versions.push(version);
    }
    crd
}

/// A field with an enum, a pattern or a length is not nullable: Kubernetes then prunes an
/// explicit `null` there (and applies the default, if any), where a nullable field would keep
/// the `null` and refuse it as "not one of" the enum.
fn not_nullable_where_validated(schema: &mut JSONSchemaProps) {
    let validated = schema.enum_.is_some()
        || schema.pattern.is_some()
        || schema.min_length.is_some()
        || schema.max_length.is_some();
    if validated {
        schema.nullable = None;
    }
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        not_nullable_where_validated(property);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        not_nullable_where_validated(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        not_nullable_where_validated(values);
    }
}

/// The YAML committed for one CRD.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let header = "# Generated from the Rust types by `cargo run -p secret-bridge-controller --bin secret-bridge-crdgen`. Do not edit.\n";
    format!(
        "{header}{}",
        yaml_serde::to_string(crd).expect("a CRD serializes")
    )
}

/// Where the Helm chart keeps its copy, installed when `crds.install` is true.
pub const HELM_DIR: &str = "infra/helm/secret-bridge/templates/crds";

/// The chart's template for one CRD: the same YAML behind the `crds.install` switch, kept on
/// `helm uninstall` unless `crds.keep` is false (deleting a CRD deletes every resource of it).
pub fn to_helm_template(crd: &CustomResourceDefinition) -> String {
    let yaml = to_yaml(crd);
    let keep = "  annotations:\n    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n";
    let with_keep = yaml.replacen("metadata:\n", &format!("metadata:\n{keep}"), 1);
    format!("{{{{- if .Values.crds.install }}}}\n{with_keep}{{{{- end }}}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let dir = format!("{root}/infra/crds");
        for (file, crd) in all() {
            let committed = std::fs::read_to_string(format!("{dir}/{file}"))
                .unwrap_or_else(|e| panic!("infra/crds/{file}: {e}"));
            let chart = std::fs::read_to_string(format!("{root}/{HELM_DIR}/{file}"))
                .unwrap_or_else(|e| panic!("{HELM_DIR}/{file}: {e}"));
            assert!(
                chart == to_helm_template(&crd),
                "{HELM_DIR}/{file} drifted from the Rust types: run `cargo run -p secret-bridge-controller --bin secret-bridge-crdgen`"
            );
            assert!(
                committed == to_yaml(&crd),
                "infra/crds/{file} drifted from the Rust types: run `cargo run -p secret-bridge-controller --bin secret-bridge-crdgen`"
            );
        }
    }

    /// Every field path of a schema, with whether it has a description.
    fn fields(schema: &JSONSchemaProps, at: &str, out: &mut Vec<(String, bool)>) {
        for (name, property) in schema.properties.iter().flatten() {
            let path = format!("{at}.{name}");
            let described = property
                .description
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty());
            out.push((path.clone(), described));
            fields(property, &path, out);
        }
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
            fields(items, &format!("{at}[]"), out);
        }
        if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
            fields(values, &format!("{at}{{}}"), out);
        }
    }

    #[test]
    fn every_field_and_every_root_is_described() {
        let mut undescribed = Vec::new();
        for (file, crd) in all() {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("a schema");
            let root = schema.description.as_deref().unwrap_or_default();
            assert!(
                root.contains(&crd.spec.names.kind) && !root.contains("Auto-generated"),
                "{file}: the root description {root:?} does not describe the kind"
            );
            let mut all_fields = Vec::new();
            fields(schema, "", &mut all_fields);
            let described = all_fields.iter().filter(|(_, d)| *d).count();
            println!(
                "{file}: {described} of {} fields described",
                all_fields.len()
            );
            undescribed.extend(
                all_fields
                    .into_iter()
                    .filter(|(_, d)| !d)
                    .map(|(path, _)| format!("{file}: {path}")),
            );
        }
        assert!(
            undescribed.is_empty(),
            "fields without a description (add a doc comment to the Rust field):\n{}",
            undescribed.join("\n")
        );
    }

    #[test]
    fn v1_is_stored_and_v1beta1_served() {
        for (_, crd) in all() {
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage))
                .collect();
            assert_eq!(versions, [("v1", true, true), ("v1beta1", true, false)]);
        }
    }
}
