//! The model manifest: what each shipped ONNX file is, how to feed it, and how to read it.
//!
//! `models/manifest.toml` is written by the training pipeline (`models/training`), never by
//! hand, and parsed here once into validated types. The daemon refuses a model file whose
//! sha256 differs from the manifest's: a model is part of the device's behaviour, and a
//! swapped or corrupted file must stop start-up rather than produce verdicts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Errors reading or checking the manifest, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {source}; check the models directory setting")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("model manifest {path} is invalid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("model manifest {path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("model file {path} is missing or unreadable ({source}); reinstall the models/ directory")]
    ModelMissing { path: PathBuf, source: std::io::Error },
    #[error("model file {path} has sha256 {actual}, but the manifest expects {expected}; reinstall the models/ directory or rebuild the manifest with the training pipeline")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// The model roles, in pipeline order: the classifier gates the segmenter.
pub const ROLES: [&str; 2] = ["classifier", "segmenter"];

/// The whole manifest: one entry per model role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub classifier: ModelEntry,
    pub segmenter: ModelEntry,
    /// Where the manifest was read from; model paths are relative to this folder.
    #[serde(skip)]
    dir: PathBuf,
}

/// One model role (classifier or segmenter) with its shipped int8 variants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub version: String,
    pub architecture: String,
    /// The variant loaded unless a board profile asks for another.
    pub default_variant: String,
    pub variants: BTreeMap<String, Variant>,
    pub input: Input,
    pub output: Output,
    pub preprocess: Preprocess,
    pub thresholds: BTreeMap<String, f64>,
    /// Measured metrics and the data they were measured on, kept for display and audit.
    #[serde(default)]
    pub metrics: toml::Table,
    #[serde(default)]
    pub training: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub file: String,
    pub sha256: String,
    pub format: String,
    #[serde(default)]
    pub note: String,
    /// Largest difference allowed between tract's and onnxruntime's outputs on this file.
    pub tolerance: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub meaning: String,
}

/// The preprocessing contract; see `preprocess` for the code that honours it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Only "pil-bilinear" is defined: Pillow's `Image.resize(..., BILINEAR)` on 8-bit grey.
    pub resize: String,
    pub width: usize,
    pub height: usize,
    pub scale: f32,
    pub mean: f32,
    pub std: f32,
    pub channels: usize,
    pub description: String,
}

impl Manifest {
    /// Read and validate `path` (usually `models/manifest.toml`).
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.into(),
            source,
        })?;
        let mut manifest: Manifest = toml::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.into(),
            source,
        })?;
        manifest.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        manifest.validate().map_err(|what| ManifestError::Invalid {
            path: path.into(),
            what,
        })?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if self.schema != 1 {
            return Err(format!(
                "schema {} is not supported (this ptxd reads schema 1)",
                self.schema
            ));
        }
        for role in ROLES {
            let entry = self.entry(role).expect("every role has an entry");
            if !entry.variants.contains_key(&entry.default_variant) {
                return Err(format!(
                    "[{role}] default_variant {:?} is not among its variants",
                    entry.default_variant
                ));
            }
            let p = &entry.preprocess;
            if p.resize != "pil-bilinear" {
                return Err(format!("[{role}.preprocess] resize {:?} is unknown", p.resize));
            }
            if entry.input.shape != [1, p.channels, p.height, p.width] || entry.input.layout != "NCHW" {
                return Err(format!(
                    "[{role}.input] shape {:?} does not match the preprocessing",
                    entry.input.shape
                ));
            }
            if !(p.std > 0.0 && p.scale > 0.0) {
                return Err(format!("[{role}.preprocess] scale and std must be positive"));
            }
            for (name, v) in &entry.variants {
                if v.sha256.len() != 64 || !v.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("[{role}.variants.{name}] sha256 is not 64 hex digits"));
                }
            }
            for (name, t) in &entry.thresholds {
                if !(0.0..=1.0).contains(t) && !name.ends_with("pixels") {
                    return Err(format!("[{role}.thresholds] {name} = {t} is outside 0..1"));
                }
            }
        }
        Ok(())
    }

    /// The entry for a model role, `"classifier"` or `"segmenter"`; None for anything else.
    pub fn entry(&self, role: &str) -> Option<&ModelEntry> {
        match role {
            "classifier" => Some(&self.classifier),
            "segmenter" => Some(&self.segmenter),
            _ => None,
        }
    }

    /// The folder the model files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a variant's file, after checking it exists and its sha256 matches.
    pub fn verified_path(&self, variant: &Variant) -> Result<PathBuf, ManifestError> {
        let path = self.dir.join(&variant.file);
        let actual = sha256_file(&path).map_err(|source| ManifestError::ModelMissing {
            path: path.clone(),
            source,
        })?;
        if !actual.eq_ignore_ascii_case(&variant.sha256) {
            return Err(ManifestError::Checksum {
                path,
                expected: variant.sha256.clone(),
                actual,
            });
        }
        Ok(path)
    }
}

impl ModelEntry {
    /// The named variant, or the default one when `name` is None.
    pub fn variant(&self, name: Option<&str>) -> Option<(&str, &Variant)> {
        let key = name.unwrap_or(&self.default_variant);
        self.variants.get_key_value(key).map(|(k, v)| (k.as_str(), v))
    }
}

/// Lower-case hex of a digest.
/// The sha256 of a file, streamed (a large file is never held in memory), as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
