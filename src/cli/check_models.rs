//! `ptxd check-models`: every model of the manifest checked, loaded and run once, with the
//! CPU features tract picked its kernels for.

use std::time::Instant;

use ptxd::model::infer::Model;
use ptxd::model::manifest::{Manifest, Role};

pub fn check_models(manifest: &std::path::Path, variant: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::load(manifest)?;
    println!(
        "tract picks its kernels for CPU features {}",
        ptxd::model::infer::cpu_features()
    );
    for role in Role::ALL {
        let started = Instant::now();
        let model = Model::load(&manifest, role, variant)?;
        let loaded = started.elapsed();
        let entry = manifest.files(role);
        let input = vec![0.0f32; entry.input.shape.iter().product()];
        let started = Instant::now();
        model.run(input)?;
        println!(
            "{role}: {} variant {} ({}), sha256 ok, loaded in {:.2}s, one run {:.2}s; input {} {:?}; output {} = {}",
            model.version(),
            model.variant(),
            model.path().display(),
            loaded.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            entry.input.name,
            entry.input.shape,
            entry.output.name,
            entry.output.meaning,
        );
    }
    Ok(())
}
