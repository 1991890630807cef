//! Writes the CRDs generated from the Rust types to `infra/crds/` (or the directory given).

use std::path::PathBuf;

use secret_bridge_controller::api::crd;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/crds")));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, crd::to_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
