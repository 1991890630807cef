//! The ESO conformance corpus (`tests/conformance/`), one test per feature directory so that
//! failures are attributed and features run in parallel; each test runs its cases at once
//! against one controller. `CONFORMANCE_FILTER=remote-ref/` narrows a run to matching cases.

use secret_bridge_tests::conformance::run_feature;

macro_rules! features {
    ($($test:ident => $dir:literal $([$($arg:literal),*])?),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                run_feature($dir, &[$($($arg),*)?]).await;
            }
        )*
    };
}

features! {
    conformance_remote_ref => "remote-ref",
    conformance_data_from_extract => "data-from-extract",
    conformance_data_from_find => "data-from-find",
    conformance_rewrite => "rewrite",
    conformance_target_policies => "target-policies",
    conformance_template => "template",
    conformance_refresh => "refresh",
    conformance_status => "status",
    conformance_stores => "stores",
    // A controller with a class serves no ClusterExternalSecret unless told to.
    conformance_cluster_external_secret => "cluster-external-secret"
        ["--cluster-external-secrets", "true"],
    conformance_unsupported => "unsupported",
    conformance_errors => "errors",
}
