//! tract, fed by ptxd's own preprocessing, reproduces what onnxruntime computed in Python
//! (`models/reference/vectors.json`, written by `ptx_training.reference`) on the shipped
//! int8 files, within the manifest's per-file tolerance.
//!
//! Inputs: the committed phantoms, and real radiographs read from `../shared/data` beside
//! the checkout (never committed). Every input goes through ptxd's own decoder, so the
//! DICOM entry (decoded by pydicom + libjpeg on the Python side) checks the DICOM path too.

use std::path::{Path, PathBuf};

use crate::common;

use common::{data, root};
use ptxd::base::files::sha256_hex;
use ptxd::model::infer::Model;
use ptxd::model::manifest::{Manifest, Role};
use ptxd::model::preprocess::{resize_pil_bilinear, to_tensor};
use ptxd::model::reference::{Input, Vectors};
use ptxd::pixels::grey::GreyImage;

fn vectors() -> Vectors {
    Vectors::load(&root().join("models/reference/vectors.json")).unwrap_or_else(|e| panic!("{e}"))
}

fn resolve(label: &str) -> PathBuf {
    match label.strip_prefix("../shared/data/") {
        Some(rel) => data(rel),
        None => root().join(label),
    }
}

fn grey(path: &Path) -> GreyImage {
    ptxd::pixels::decode::decode_file(path, Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .image
}

/// Inputs of the vectors that this test can decode, with the image resized for `role`.
fn inputs(v: &Vectors, role: Role) -> Vec<(&Input, GreyImage)> {
    let manifest = manifest();
    let p = manifest.files(role).preprocess;
    let mut out = Vec::new();
    for input in v.inputs() {
        let label = &input.label;
        let path = resolve(label);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (the tests read ../shared/data)", path.display()));
        assert_eq!(
            sha256_hex(&bytes),
            input.sha256,
            "{label} is not the file the vectors were made from"
        );
        let resized = resize_pil_bilinear(&grey(&path), p.width, p.height);
        out.push((input, resized));
    }
    assert!(out.len() >= 6, "every reference input must decode");
    out
}

fn manifest() -> Manifest {
    Manifest::load(&root().join("models/manifest.toml")).expect("manifest")
}

#[test]
fn preprocessing_matches_pillow() {
    let v = vectors();
    for (input, resized) in inputs(&v, Role::Classifier) {
        let (label, pre) = (&input.label, &input.preprocessed);
        let mean = resized.pixels.iter().map(|&p| p as f64).sum::<f64>() / resized.pixels.len() as f64;
        if label.ends_with(".png") {
            // PNG is lossless: the resize must give Pillow's very pixels.
            assert_eq!(
                sha256_hex(&resized.pixels),
                pre.resized_sha256,
                "{label}: resize differs from Pillow"
            );
        } else {
            // JPEG decoders (also inside the DICOM) may differ by a grey level here and there
            // (IDCT rounding).
            let expected = pre.resized_mean;
            assert!(
                (mean - expected).abs() < 0.5,
                "{label}: mean {mean} vs Pillow's {expected}"
            );
        }
        for &(y, x, value) in &pre.samples {
            let (got, value) = (resized.pixels[y * resized.width + x] as i64, value as i64);
            let slack = if label.ends_with(".png") { 0 } else { 2 };
            assert!(
                (got - value).abs() <= slack,
                "{label}: pixel ({y},{x}) = {got}, Pillow gave {value}"
            );
        }
    }
}

fn check_model(role: Role, variant: &str, only_repo_inputs: bool) {
    check_model_of(manifest(), role, variant, only_repo_inputs)
}

fn check_model_of(manifest: Manifest, role: Role, variant: &str, only_repo_inputs: bool) {
    let model = Model::load(&manifest, role, Some(variant)).expect("model loads in tract");
    let entry = manifest.files(role);
    let full_tolerance = entry.variants[variant].tolerance;
    let file = &entry.variants[variant].file;
    let v = vectors();
    for (input, resized) in inputs(&v, role) {
        let label = &input.label;
        if only_repo_inputs && input.shipped_path(&root().join("models")).is_none() {
            continue; // read from ../shared/data, not shipped in the repo
        }
        // The manifest's tolerance covers JPEG inputs, whose decoders differ by a grey level
        // here and there (the per-channel int8 EfficientNets amplify that); a lossless PNG
        // gives both sides the same tensor, so only the runtimes differ and half of it must
        // hold (measured: at most 0.037, on the segmenter's QDQ file, which tract runs in f32).
        let tolerance = if label.ends_with(".png") {
            full_tolerance / 2.0
        } else {
            full_tolerance
        };
        let outputs = model
            .run_all(to_tensor(&resized, entry.preprocess))
            .expect("model runs");
        let d = input
            .difference(role, &entry, file, &outputs)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{file} {label}: differs from onnxruntime by {:.5}, mask pixels {:?}",
            d.worst, d.mask_pixels
        );
        assert!(
            d.worst <= tolerance,
            "{file} on {label}: differs from onnxruntime by {} (tolerance {tolerance})",
            d.worst
        );
        if let Some((count, expected)) = d.mask_pixels {
            // The 0.5 contour of an int8 mask moves with the runtimes' rounding (measured up to
            // a third of a small mask's pixels, 401 against 302 on a JPEG); the grid check
            // (16x16 block means, in `worst`) is the main criterion, this one catches a mask
            // that is gone or doubled.
            assert!(
                count.abs_diff(expected) <= 20 + expected / 2,
                "{file} on {label}: {count} vs {expected} mask pixels"
            );
        }
        if role == Role::Lungs {
            assert_eq!(outputs.len(), 2, "{file}: lungs and the chest-or-not score");
        }
    }
}

#[test]
fn lungs_int8_matches_onnxruntime() {
    check_model(Role::Lungs, "int8", false);
}

#[test]
fn lungs_int8_qdq_matches_onnxruntime() {
    check_model(Role::Lungs, "int8-qdq", true);
}

#[test]
fn classifier_int8_matches_onnxruntime() {
    check_model(Role::Classifier, "int8", false);
}

#[test]
fn classifier_int8_qdq_matches_onnxruntime() {
    check_model(Role::Classifier, "int8-qdq", true);
}

/// The design's DenseNet121 classifier, shipped as a variant pipeline (models/densenet121.toml).
#[test]
fn densenet121_classifier_int8_matches_onnxruntime() {
    let m = Manifest::load(&root().join("models/densenet121.toml")).expect("densenet121.toml");
    assert!(m.classifier.architecture.contains("DenseNet121"));
    check_model_of(m, Role::Classifier, "int8", true);
}

#[test]
fn segmenter_int8_matches_onnxruntime() {
    check_model(Role::Segmenter, "int8", false);
}

#[test]
fn segmenter_int8_qdq_matches_onnxruntime() {
    check_model(Role::Segmenter, "int8-qdq", true);
}

#[test]
fn tampered_model_is_refused() {
    let dir = std::env::temp_dir().join(format!("ptxd-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let models = root().join("models");
    std::fs::copy(models.join("manifest.toml"), dir.join("manifest.toml")).unwrap();
    let m = manifest();
    for role in Role::ALL {
        for v in m.files(role).variants.values() {
            std::fs::copy(models.join(&v.file), dir.join(&v.file)).unwrap();
        }
    }
    let file = &m.classifier.variants["int8"].file;
    let mut bytes = std::fs::read(dir.join(file)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.join(file), bytes).unwrap();
    let copy = Manifest::load(&dir.join("manifest.toml")).unwrap();
    let err = Model::load(&copy, Role::Classifier, None)
        .err()
        .expect("tampered file must be refused")
        .to_string();
    assert!(err.contains(file.as_str()) && err.contains("sha256"), "{err}");
    std::fs::remove_file(dir.join(&m.segmenter.variants["int8"].file)).unwrap();
    let err = Model::load(&copy, Role::Segmenter, None)
        .err()
        .expect("missing file must be refused")
        .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The kernel path these tests ran on is the one asked for. `./test.sh` runs them under
/// qemu-user twice: as a Cortex-A76 (`PTXD_EXPECT_CPU=+dotprod`: tract's SDOT int8 kernel, the
/// Pi 5's and Orin's path) and as a Cortex-A72 (`-dotprod`: the SMLAL kernel, the Pi 4's).
/// Without the variable (x86, a plain `cargo test`) it only prints what tract found.
#[test]
fn tract_runs_the_kernel_path_asked_for() {
    let found = ptxd::model::infer::cpu_features();
    eprintln!("tract's CPU features: {found}");
    let Ok(expect) = std::env::var("PTXD_EXPECT_CPU") else {
        return;
    };
    let has = |name: &str| found.split(',').any(|f| f == name);
    for want in expect.split_whitespace() {
        let (present, name) = match want.split_at(1) {
            ("+", name) => (true, name),
            ("-", name) => (false, name),
            _ => panic!("PTXD_EXPECT_CPU: {want:?} is neither +feature nor -feature"),
        };
        assert_eq!(
            has(name),
            present,
            "expected {want} in tract's CPU features, found {found}"
        );
    }
}
