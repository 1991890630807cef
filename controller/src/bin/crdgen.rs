//! Writes the CRDs generated from the Rust types to `infra/crds/` and into the Helm chart.

use std::path::Path;

use secret_bridge_controller::api::crd;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plain = root.join("infra/crds");
    let chart = root.join(crd::HELM_DIR);
    std::fs::create_dir_all(&plain)?;
    std::fs::create_dir_all(&chart)?;
    for (file, crd) in crd::all() {
        std::fs::write(plain.join(file), crd::to_yaml(&crd))?;
        std::fs::write(chart.join(file), crd::to_helm_template(&crd))?;
        println!("wrote infra/crds/{file} and {}/{file}", crd::HELM_DIR);
    }
    Ok(())
}
