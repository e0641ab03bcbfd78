//! Which shipped variant of the models this CPU runs: `[models] variant = "auto"` in the
//! config, or `ptxd bench --choose`.
//!
//! Every variant that all three roles ship is tried here: each model is checked against the
//! reference vectors on the inputs shipped with the models (onnxruntime's outputs, within the
//! manifest's tolerance) and timed. The fastest variant within tolerance wins.
//!
//! Only variants the thresholds hold for are candidates: each role's default file, on whose
//! outputs the thresholds (the operating point, the indeterminate band, the mask's pixel
//! limit) were chosen, and any variant the manifest marks `calibrated`. A twin that computes
//! differently is another model at that operating point, however fast: the UNet++
//! classifier's QDQ twin moves 25 of 124 held-out verdicts across it, while agreeing
//! with it within tolerance on the shipped phantoms (docs/performance.md). A few shipped
//! inputs cannot tell that; the validation set that chose the thresholds can. Why measure
//! rather than decide by architecture: which file tract runs faster depends on the CPU's
//! kernels (the QDQ twins run in f32 and win on AVX-512 x86; the QLinearConv files run integer
//! kernels that are NEON's strength), and nobody has yet timed every board.
//!
//! A trial takes seconds on x86 and could take a minute on a Pi 4, so the choice is written
//! beside the journal and reused while its key holds: the manifest (so a model update
//! measures again), the CPU as tract sees it (an SD card moved from a Pi 4 to a Pi 5) and the
//! thread count.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::files::sha256_file;
use crate::base::timings::Timings;
use crate::model::infer::{self, InferError, Model};
use crate::model::manifest::{Manifest, Role};
use crate::model::preprocess::model_input;
use crate::model::reference::{Input, ReferenceError, Vectors};
use crate::pixels::decode::decode_file;
use crate::pixels::grey::GreyImage;

#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Model(#[from] InferError),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "no shipped input in {0} could be read to check the variants (reinstall the models with models/reference/)"
    )]
    NoInputs(PathBuf),
    #[error(
        "no model variant reproduces the reference outputs on this CPU ({0}); \
         pin one with [models] variant in the config to run anyway"
    )]
    NoneAdmitted(String),
    #[error("cannot write the variant choice {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One model of a variant, on this CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelTrial {
    pub role: Role,
    pub file: String,
    /// Median of the timed runs, on a shipped input.
    pub median_ms: f64,
    /// The largest difference from onnxruntime's outputs over the shipped inputs.
    pub worst: f64,
    pub tolerance: f64,
    /// Why the model is out, when it is (no reference outputs for the file, stale vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The role whose run gives this one's output too (one file for both): its time is
    /// counted there, and `median_ms` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_with: Option<Role>,
}

impl ModelTrial {
    pub fn admitted(&self) -> bool {
        self.refused.is_none() && self.worst <= self.tolerance
    }
}

/// One variant's three models on this CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub variant: String,
    pub models: Vec<ModelTrial>,
}

impl Trial {
    /// The models' medians added up: one positive image's inference.
    pub fn total_ms(&self) -> f64 {
        self.models.iter().map(|m| m.median_ms).sum()
    }

    pub fn admitted(&self) -> bool {
        self.models.iter().all(ModelTrial::admitted)
    }
}

/// The fastest admitted trial, if any.
pub fn fastest(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter(|t| t.admitted())
        .min_by(|a, b| a.total_ms().total_cmp(&b.total_ms()))
}

/// What a choice was made for: it holds only while all three are the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub manifest_sha256: String,
    pub cpu: String,
    pub threads: usize,
}

impl Key {
    /// The key for this machine, the manifest at `manifest_path`, and `threads`.
    pub fn here(manifest_path: &Path, threads: usize) -> Result<Key, VariantError> {
        let manifest_sha256 = sha256_file(manifest_path).map_err(|e| VariantError::Read {
            path: manifest_path.into(),
            reason: e.to_string(),
        })?;
        Ok(Key {
            manifest_sha256,
            cpu: cpu_identity(),
            threads,
        })
    }
}

/// A choice and the trials it rests on, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub variant: String,
    pub key: Key,
    pub trials: Vec<Trial>,
}

impl Choice {
    /// The fastest admitted variant of `trials`; an error naming why each was out when none
    /// was admitted.
    pub fn from_trials(key: Key, trials: Vec<Trial>) -> Result<Choice, VariantError> {
        match fastest(&trials) {
            Some(t) => Ok(Choice {
                variant: t.variant.clone(),
                key,
                trials,
            }),
            None => Err(VariantError::NoneAdmitted(describe(&trials))),
        }
    }

    /// The cached choice at `path`, if there is one and it was made for `key`.
    pub fn cached(path: &Path, key: &Key) -> Option<Choice> {
        let text = std::fs::read_to_string(path).ok()?;
        let choice: Choice = serde_json::from_str(&text).ok()?;
        (choice.key == *key).then_some(choice)
    }

    /// Write the choice to `path` (whole or not at all: a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), VariantError> {
        let write_err = |source| VariantError::Write {
            path: path.into(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a choice serialises");
        std::fs::write(&tmp, text + "\n").map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

/// Try every variant (`runs` timed runs a model) and choose the fastest admitted one; an
/// error when no variant reproduces the reference outputs here.
pub fn measure(manifest: &Manifest, key: Key, runs: usize) -> Result<Choice, VariantError> {
    Choice::from_trials(key, try_all(manifest, runs)?)
}

/// Each variant in a few words: "int8 846 ms, int8-qdq out (classifier 0.31 > 0.2)".
pub fn describe(trials: &[Trial]) -> String {
    let one = |t: &Trial| {
        let out: Vec<String> = t
            .models
            .iter()
            .filter(|m| !m.admitted())
            .map(|m| match &m.refused {
                Some(why) => format!("{}: {why}", m.role),
                None => format!("{} differs by {:.3} > {}", m.role, m.worst, m.tolerance),
            })
            .collect();
        match out.is_empty() {
            true => format!("{} {:.0} ms", t.variant, t.total_ms()),
            false => format!("{} out ({})", t.variant, out.join(", ")),
        }
    };
    trials.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// The variants every role ships, each tried on this CPU.
pub fn try_all(manifest: &Manifest, runs: usize) -> Result<Vec<Trial>, VariantError> {
    let vectors = Vectors::load(&manifest.dir().join("reference/vectors.json"))?;
    let images = shipped_images(manifest.dir(), &vectors)?;
    let common = Role::ALL.iter().fold(None::<Vec<String>>, |names, &role| {
        let here = manifest.files(role).variants.keys().cloned();
        Some(match names {
            None => here.collect(),
            Some(n) => here.filter(|v| n.contains(v)).collect(),
        })
    });
    let mut trials = Vec::new();
    for variant in common.unwrap_or_default() {
        let mut loaded: Vec<Model> = Vec::new();
        let mut models = Vec::new();
        for role in Role::ALL {
            // a role whose file an earlier role loaded runs in that role's run (as the analysis does)
            let mut shared = None;
            for earlier in &loaded {
                if let Some(model) = earlier.also_as(manifest, role, Some(&variant))? {
                    shared = Some((model, earlier.role()));
                    break;
                }
            }
            let (model, runs_with) = match shared {
                Some((model, with)) => (model, Some(with)),
                None => (Model::load(manifest, role, Some(&variant))?, None),
            };
            models.push(try_model(manifest, &model, runs_with, &vectors, &images, runs)?);
            loaded.push(model);
        }
        trials.push(Trial { variant, models });
    }
    Ok(trials)
}

/// The shipped inputs of the vectors, decoded (a missing, unreadable or altered one is
/// skipped).
fn shipped_images<'v>(models_dir: &Path, vectors: &'v Vectors) -> Result<Vec<(&'v Input, GreyImage)>, VariantError> {
    let mut images = Vec::new();
    for input in vectors.inputs() {
        let Some(path) = input.shipped_path(models_dir) else {
            continue;
        };
        // the decoder hashes the bytes it reads: one read checks and decodes the file
        match decode_file(&path, Default::default()) {
            Ok(r) if r.sha256.eq_ignore_ascii_case(&input.sha256) => images.push((input, r.image)),
            Ok(_) => log::warn!("reference input {} is altered; not used", path.display()),
            Err(e) => log::warn!("reference input {e}; not used"),
        }
    }
    match images.is_empty() {
        true => Err(VariantError::NoInputs(vectors.path().into())),
        false => Ok(images),
    }
}

fn try_model(
    manifest: &Manifest,
    model: &Model,
    runs_with: Option<Role>,
    vectors: &Vectors,
    images: &[(&Input, GreyImage)],
    runs: usize,
) -> Result<ModelTrial, VariantError> {
    let (role, variant) = (model.role(), model.variant());
    let files = manifest.files(role);
    let (_, v) = files.variant(Some(variant)).expect("a variant every role ships");
    let (default_name, default) = files.variant(None).expect("validated: the default ships");
    let mut trial = ModelTrial {
        role,
        file: v.file.clone(),
        median_ms: 0.0,
        worst: 0.0,
        tolerance: v.tolerance,
        refused: None,
        runs_with,
    };
    if vectors
        .file_sha256(&v.file)
        .is_none_or(|sha| !sha.eq_ignore_ascii_case(&v.sha256))
    {
        trial.refused = Some(format!("the reference vectors were not made from {}", v.file));
    }
    if default_name != variant && !v.calibrated {
        trial.refused = Some(format!(
            "the thresholds were chosen on {}'s outputs, not on this file's (not calibrated in the manifest)",
            default.file
        ));
    }
    let mut tensor = Vec::new();
    for (input, image) in images {
        tensor = model_input(image, files.preprocess);
        let outputs = model.run_all(tensor.clone())?;
        match input.difference(role, &files, &v.file, &outputs) {
            Ok(d) => trial.worst = trial.worst.max(d.worst),
            Err(e) => trial.refused = Some(e.to_string()),
        }
    }
    if runs_with.is_none() {
        // the reference runs above were the warm-up; time the last input
        let (times, _) = Timings::measure(runs, || model.run_all(tensor.clone()))?;
        trial.median_ms = times.median() * 1000.0;
    }
    Ok(trial)
}

/// The CPU as tract sees it (its kernel features) and as the kernel names it (x86's model
/// name, or the ARM cores' part numbers: a Pi 4's A72 is 0xd08, a Pi 5's A76 0xd0b).
pub fn cpu_identity() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut names: Vec<&str> = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(k.trim(), "model name" | "CPU part"))
        .map(|(_, v)| v.trim())
        .collect();
    names.sort_unstable();
    names.dedup();
    format!("{} ({})", infer::cpu_features(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(variant: &str, ms: [f64; 3], worst: f64) -> Trial {
        let models = Role::ALL
            .into_iter()
            .zip(ms)
            .map(|(role, median_ms)| ModelTrial {
                role,
                file: format!("{role}.{variant}.onnx"),
                median_ms,
                worst,
                tolerance: 0.1,
                refused: None,
                runs_with: None,
            })
            .collect();
        Trial {
            variant: variant.into(),
            models,
        }
    }

    #[test]
    fn the_fastest_variant_within_tolerance_wins() {
        let slow = trial("int8", [80.0, 380.0, 380.0], 0.01);
        let fast = trial("int8-qdq", [40.0, 200.0, 200.0], 0.01);
        assert_eq!(fastest(&[slow.clone(), fast.clone()]).unwrap().variant, "int8-qdq");
        // faster, but one model is off by more than its tolerance
        let wrong = trial("int8-fast", [10.0, 50.0, 50.0], 0.3);
        assert_eq!(fastest(&[slow.clone(), wrong.clone()]).unwrap().variant, "int8");
        let mut stale = fast.clone();
        stale.models[1].refused = Some("the reference vectors were not made from it".into());
        assert_eq!(fastest(&[stale.clone(), slow]).unwrap().variant, "int8");
        assert!(fastest(&[wrong.clone(), stale.clone()]).is_none());
        let text = describe(&[wrong, stale]);
        assert!(
            text.contains("int8-fast out (lungs differs by 0.300 > 0.1")
                && text.contains("classifier: the reference vectors were not made from it"),
            "{text}"
        );
        // a twin that reproduces its own vectors but was not calibrated: out, whatever its
        // speed (the shipped files: tests/it/daemon.rs)
        let mut other_model = fast.clone();
        other_model.models[1].refused = Some("the thresholds were chosen on segmenter.int8.onnx's outputs".into());
        assert_eq!(
            fastest(&[other_model, trial("int8", [80.0, 380.0, 380.0], 0.01)])
                .unwrap()
                .variant,
            "int8"
        );
    }

    #[test]
    fn only_unaltered_shipped_inputs_are_used() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let dir = tempfile::tempdir().unwrap();
        let reference = dir.path().join("reference");
        std::fs::create_dir(&reference).unwrap();
        for name in ["vectors.json", "phantom-clear.png"] {
            std::fs::copy(models.join("reference").join(name), reference.join(name)).unwrap();
        }
        // a byte more after the PNG's end: it still decodes, but it is not the file the
        // vectors were made from
        let mut altered = std::fs::read(models.join("reference/phantom-ptx.png")).unwrap();
        altered.push(0);
        std::fs::write(reference.join("phantom-ptx.png"), altered).unwrap();
        let vectors = Vectors::load(&reference.join("vectors.json")).unwrap();
        let images = shipped_images(dir.path(), &vectors).unwrap();
        let used: Vec<&str> = images.iter().map(|(input, _)| input.label.as_str()).collect();
        assert_eq!(used, ["models/reference/phantom-clear.png"]);
        std::fs::remove_file(reference.join("phantom-clear.png")).unwrap();
        assert!(matches!(
            shipped_images(dir.path(), &vectors),
            Err(VariantError::NoInputs(_))
        ));
    }

    #[test]
    fn a_cached_choice_holds_only_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("variant.json");
        let key = Key {
            manifest_sha256: "ab".repeat(32),
            cpu: "aarch64,dotprod (0xd0b)".into(),
            threads: 3,
        };
        let choice = Choice {
            variant: "int8".into(),
            key: key.clone(),
            trials: vec![trial("int8", [1.0, 2.0, 3.0], 0.0)],
        };
        assert_eq!(Choice::cached(&path, &key), None, "nothing cached yet");
        choice.save(&path).unwrap();
        assert_eq!(Choice::cached(&path, &key), Some(choice));
        let other = [
            Key {
                manifest_sha256: "cd".repeat(32),
                ..key.clone()
            },
            Key {
                cpu: "aarch64 (0xd08)".into(),
                ..key.clone()
            },
            Key {
                threads: 1,
                ..key.clone()
            },
        ];
        for k in other {
            assert_eq!(Choice::cached(&path, &k), None, "{k:?}");
        }
        std::fs::write(&path, "{ torn").unwrap();
        assert_eq!(Choice::cached(&path, &key), None, "a damaged cache is measured again");
    }
}
