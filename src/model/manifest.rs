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

use crate::base::files::sha256_file;

/// Errors reading or checking the manifest, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {source}; pass --manifest PATH (ptxd analyze, doctor, check-models) or set [models] manifest in the config (ptxd run)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no model manifest found (looked for {looked}); pass --manifest PATH, set PTXD_MANIFEST, or install the models with deploy/install.sh")]
    NotFound { looked: String },
    #[error("model manifest {path} is invalid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("model manifest {path}: {rule}")]
    Invalid { path: PathBuf, rule: ManifestRule },
    #[error("model file {path} is missing or unreadable ({source}); reinstall the models/ directory")]
    ModelMissing { path: PathBuf, source: std::io::Error },
    #[error("model file {path} has sha256 {actual}, but the manifest expects {expected}; reinstall the models/ directory or rebuild the manifest with the training pipeline")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// A manifest whose values cannot be right: each names the key.
#[derive(Debug, thiserror::Error)]
pub enum ManifestRule {
    #[error("schema {0} is not supported (this ptxd reads schema {SCHEMA}); install the models/ folder that came with this ptxd")]
    Schema(u32),
    #[error("[{role}.thresholds] {name} = {value} is outside 0..1")]
    OutsideUnit { role: Role, name: &'static str, value: f32 },
    #[error("[classifier.thresholds] indeterminate_low is above probability")]
    BandAboveThreshold,
    #[error("[lungs.thresholds] min_fraction must be below max_fraction")]
    LungFractions,
    #[error("[lungs] needs one extra output, \"chest\" of shape [1, 1] (the chest-or-not probability); install the models/ folder that came with this ptxd")]
    NoChestOutput,
    #[error("[{role}] default_variant {name:?} is not among its variants")]
    NoDefaultVariant { role: Role, name: String },
    #[error("[{role}.preprocess] resize {resize:?} is unknown")]
    Resize { role: Role, resize: String },
    #[error("[{role}.input] shape {shape:?} does not match the preprocessing")]
    InputShape { role: Role, shape: Vec<usize> },
    #[error("[{0}.preprocess] scale and std must be positive")]
    Scale(Role),
    #[error("[{role}.variants.{variant}] sha256 is not 64 hex digits")]
    Sha256 { role: Role, variant: String },
    #[error("[classifier] and [segmenter] name one file, {file}, but not with the same input, preprocessing and sha256: one file is fed one way")]
    SharedFile { file: String },
}

/// The environment variable that names the manifest when `--manifest` is not given.
pub const MANIFEST_ENV: &str = "PTXD_MANIFEST";

/// Where the command line finds the models when `--manifest` is not given, first match wins:
/// `$PTXD_MANIFEST`; `models/manifest.toml` under the current folder (a checkout); beside
/// the executable as installed (`<prefix>/bin/ptxd` -> `<prefix>/share/ptxd/models/`) or
/// as built (`target/<profile>/ptxd` -> the checkout's `models/`); `/usr/share/ptxd/models/`.
/// So ptxd works from any folder once installed, and from a checkout as before.
pub fn default_manifest() -> Result<PathBuf, ManifestError> {
    if let Some(path) = std::env::var_os(MANIFEST_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut candidates = vec![PathBuf::from("models/manifest.toml")];
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(bin.join("../share/ptxd/models/manifest.toml"));
        candidates.push(bin.join("../../models/manifest.toml"));
        candidates.push(bin.join("../../../models/manifest.toml")); // target/<triple>/<profile>/
    }
    candidates.push(PathBuf::from("/usr/share/ptxd/models/manifest.toml"));
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(ManifestError::NotFound {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The manifest schema this ptxd reads. Schema 2 added the lung-field model and typed
/// thresholds for every role; schema 3 the lung file's second output, the chest-or-not
/// probability (`[[lungs.extra_outputs]]`, `lungs.thresholds.min_chest`); schema 4 reads
/// outputs by name, and lets the classifier and the segmenter name one file with both
/// outputs, run once per image (an older ptxd would read that file's first output, the mask,
/// as the classifier's: it refuses the schema instead).
pub const SCHEMA: u32 = 4;

/// A model's job in the pipeline (serialised as its manifest name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Lung fields: gates out what is not a chest radiograph, and places findings.
    Lungs,
    /// Pneumothorax yes/no: gates the segmenter.
    Classifier,
    /// Where the pneumothorax is.
    Segmenter,
}

impl Role {
    /// Every role, in pipeline order.
    pub const ALL: [Role; 3] = [Role::Lungs, Role::Classifier, Role::Segmenter];

    /// The role's name in the manifest (`[lungs]`, `[classifier]`, `[segmenter]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lungs => "lungs",
            Role::Classifier => "classifier",
            Role::Segmenter => "segmenter",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole manifest: one entry per model role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub lungs: ModelEntry<LungThresholds>,
    pub classifier: ModelEntry<ClassifierThresholds>,
    pub segmenter: ModelEntry<SegmenterThresholds>,
    /// Where the manifest was read from; model paths are relative to this folder.
    #[serde(skip)]
    dir: PathBuf,
}

/// How to read the classifier's probability (an alarm budget on cross-validated scores:
/// models/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierThresholds {
    /// At or above: positive.
    pub probability: f32,
    /// From here up to `probability`: indeterminate ("have it read"), never clear.
    pub indeterminate_low: f32,
}

/// How to read the segmenter's mask.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmenterThresholds {
    /// A pixel at or above this probability is in the mask.
    pub pixel: f32,
    /// Regions smaller than this (on the segmenter's grid) are noise.
    pub min_area_pixels: f32,
}

/// How to read the lung-field model, and what a chest radiograph must show (see `lungs`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LungThresholds {
    /// A grid cell at or above this probability is lung.
    pub pixel: f32,
    /// Lung must cover at least this share of the image (0..1) ...
    pub min_fraction: f32,
    /// ... and at most this share.
    pub max_fraction: f32,
    /// The smaller of the two sides holds at least this share of the lung cells (0..0.5).
    pub min_side_share: f32,
    /// Standard deviation of the resized grey levels below which a frame is blank.
    pub min_contrast: f32,
    /// The lung file's chest-or-not probability below which an image does not look like a
    /// frontal chest radiograph (a photo, a drawing, a test pattern, a CT slice).
    pub min_chest: f32,
    /// Findings may reach this many grid cells beyond the lung field.
    pub margin_cells: usize,
}

/// One model role with its shipped int8 variants and its thresholds `T`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry<T> {
    pub version: String,
    pub architecture: String,
    /// The variant loaded unless a board profile asks for another.
    pub default_variant: String,
    pub variants: BTreeMap<String, Variant>,
    pub input: Input,
    pub output: Output,
    /// Further outputs, in the file's order (the lung file's chest-or-not probability).
    #[serde(default)]
    pub extra_outputs: Vec<Output>,
    pub preprocess: Preprocess,
    pub thresholds: T,
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
    /// Whether the role's thresholds were chosen (or validated) on this file's outputs as
    /// well as on the default variant's. Absent: false. `variant = "auto"` chooses only
    /// among variants whose every role is the default or calibrated (src/model/variant.rs).
    #[serde(default)]
    pub calibrated: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
        manifest.validate().map_err(|rule| ManifestError::Invalid {
            path: path.into(),
            rule,
        })?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestRule> {
        if self.schema != SCHEMA {
            return Err(ManifestRule::Schema(self.schema));
        }
        for role in Role::ALL {
            self.files(role).validate(role)?;
        }
        // one file for two roles (run once for both): it must be fed the same way for both
        let (c, s) = (self.files(Role::Classifier), self.files(Role::Segmenter));
        for cv in c.variants.values() {
            for sv in s.variants.values().filter(|sv| sv.file == cv.file) {
                if sv.sha256 != cv.sha256 || c.input != s.input || c.preprocess != s.preprocess {
                    return Err(ManifestRule::SharedFile { file: cv.file.clone() });
                }
            }
        }
        let unit = |role: Role, name: &'static str, value: f32| match (0.0..=1.0).contains(&value) {
            true => Ok(()),
            false => Err(ManifestRule::OutsideUnit { role, name, value }),
        };
        let c = &self.classifier.thresholds;
        unit(Role::Classifier, "probability", c.probability)?;
        unit(Role::Classifier, "indeterminate_low", c.indeterminate_low)?;
        if c.indeterminate_low > c.probability {
            return Err(ManifestRule::BandAboveThreshold);
        }
        unit(Role::Segmenter, "pixel", self.segmenter.thresholds.pixel)?;
        let l = &self.lungs.thresholds;
        for (name, v) in [
            ("pixel", l.pixel),
            ("min_fraction", l.min_fraction),
            ("max_fraction", l.max_fraction),
            ("min_side_share", l.min_side_share),
            ("min_chest", l.min_chest),
        ] {
            unit(Role::Lungs, name, v)?;
        }
        if l.min_fraction >= l.max_fraction {
            return Err(ManifestRule::LungFractions);
        }
        match &self.lungs.extra_outputs[..] {
            [chest] if chest.name == "chest" && chest.shape == [1, 1] => Ok(()),
            _ => Err(ManifestRule::NoChestOutput),
        }
    }

    /// The parts of a role's entry that do not depend on its kind of output.
    pub fn files(&self, role: Role) -> ModelFiles<'_> {
        match role {
            Role::Lungs => self.lungs.files(),
            Role::Classifier => self.classifier.files(),
            Role::Segmenter => self.segmenter.files(),
        }
    }

    /// The folder the model files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a variant's file, not read.
    pub fn path(&self, variant: &Variant) -> PathBuf {
        self.dir.join(&variant.file)
    }

    /// Path of a variant's file, after checking it exists and its sha256 matches.
    pub fn verified_path(&self, variant: &Variant) -> Result<PathBuf, ManifestError> {
        let path = self.path(variant);
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

impl<T> ModelEntry<T> {
    /// This entry without its thresholds.
    pub fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            version: &self.version,
            architecture: &self.architecture,
            default_variant: &self.default_variant,
            variants: &self.variants,
            input: &self.input,
            output: &self.output,
            extra_outputs: &self.extra_outputs,
            preprocess: &self.preprocess,
            metrics: &self.metrics,
        }
    }
}

/// A role's files and contract, whatever its thresholds: what loading and checking need.
#[derive(Debug, Clone, Copy)]
pub struct ModelFiles<'m> {
    pub version: &'m str,
    pub architecture: &'m str,
    pub default_variant: &'m str,
    pub variants: &'m BTreeMap<String, Variant>,
    pub input: &'m Input,
    pub output: &'m Output,
    pub extra_outputs: &'m [Output],
    pub preprocess: &'m Preprocess,
    pub metrics: &'m toml::Table,
}

impl<'m> ModelFiles<'m> {
    /// The named variant, or the default one when `name` is None.
    pub fn variant(&self, name: Option<&str>) -> Option<(&'m str, &'m Variant)> {
        let key = name.unwrap_or(self.default_variant);
        self.variants.get_key_value(key).map(|(k, v)| (k.as_str(), v))
    }

    fn validate(&self, role: Role) -> Result<(), ManifestRule> {
        if !self.variants.contains_key(self.default_variant) {
            return Err(ManifestRule::NoDefaultVariant {
                role,
                name: self.default_variant.to_string(),
            });
        }
        let p = self.preprocess;
        if p.resize != "pil-bilinear" {
            return Err(ManifestRule::Resize {
                role,
                resize: p.resize.clone(),
            });
        }
        if self.input.shape != [1, p.channels, p.height, p.width] || self.input.layout != "NCHW" {
            return Err(ManifestRule::InputShape {
                role,
                shape: self.input.shape.to_vec(),
            });
        }
        if !(p.std > 0.0 && p.scale > 0.0) {
            return Err(ManifestRule::Scale(role));
        }
        match self
            .variants
            .iter()
            .find(|(_, v)| v.sha256.len() != 64 || !v.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            Some((name, _)) => Err(ManifestRule::Sha256 {
                role,
                variant: name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The output grid (width, height) of a model whose output is `[1, 1, H, W]`.
    pub fn grid(&self) -> Option<(usize, usize)> {
        match self.output.shape[..] {
            [1, 1, h, w] => Some((w, h)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped manifest with `from` replaced by `to`, loaded from a folder of its own.
    fn load_changed(from: &str, to: &str) -> Result<Manifest, ManifestError> {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml");
        let text = std::fs::read_to_string(shipped).unwrap();
        assert!(text.contains(from), "{from}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        Manifest::load(&path)
    }

    #[test]
    fn a_manifest_that_cannot_be_right_is_refused_naming_the_key() {
        assert!(load_changed("schema = 4", "schema = 4").is_ok());
        let rule = |from: &str, to: &str| match load_changed(from, to) {
            Err(ManifestError::Invalid { rule, .. }) => rule.to_string(),
            other => panic!("{to}: {other:?}"),
        };
        assert!(rule("schema = 4", "schema = 99").contains("schema 99 is not supported"));
        assert!(rule("schema = 4", "schema = 3").contains("schema 3 is not supported"));
        assert!(rule("indeterminate_low = ", "indeterminate_low = 1.5 #")
            .contains("indeterminate_low = 1.5 is outside 0..1"));
        assert!(rule("default_variant = \"int8\"", "default_variant = \"fp64\"").contains("default_variant \"fp64\""));
        // the classifier's entry comes first: its copy of the shared file's sha256 changed
        assert!(rule("sha256 = \"388eece9", "sha256 = \"488eece9").contains("name one file, segmenter.int8.onnx"));
    }
}
