//! The reference vectors: what onnxruntime computed on each shipped model file for a few
//! inputs (`models/reference/vectors.json`, written by `ptx_training.reference`), and how far
//! tract on this machine is from it.
//!
//! Two users: `bench --choose` admits a variant on this CPU only when every model stays within
//! the manifest's tolerance on the inputs shipped with the models (the phantoms under
//! `models/reference/`), and `tests/it/reference_vectors.rs` holds every file to it on real
//! radiographs too, on x86 and on both aarch64 int8 kernel paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::manifest::{ModelFiles, Role};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read the reference vectors {path}: {reason} (they ship in models/reference/)")]
    Read { path: PathBuf, reason: String },
    #[error("reference vectors {path}: {reason} (regenerate them with python -m ptx_training.reference)")]
    Malformed { path: PathBuf, reason: String },
}

/// The vectors file, parsed once into types: a file `ptx_training.reference` did not write
/// (a missing key, a grid not 16x16) is refused at load, naming the file.
pub struct Vectors {
    path: PathBuf,
    /// The sha256 of each model file the vectors were computed from, by file name.
    files: BTreeMap<String, String>,
    inputs: Vec<Input>,
}

/// `vectors.json` as written.
#[derive(Deserialize)]
struct VectorsFile {
    files: BTreeMap<String, String>,
    inputs: Vec<Input>,
}

/// One input the vectors were computed on, and onnxruntime's outputs for every file.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// As written in the vectors: `models/reference/...` (shipped with the models) or
    /// `../shared/data/...` (read by the tests beside a checkout, never shipped).
    #[serde(rename = "input")]
    pub label: String,
    #[serde(rename = "input_sha256")]
    pub sha256: String,
    /// The pixels after the resize, as Pillow made them.
    pub preprocessed: Preprocessed,
    /// onnxruntime's outputs, by model file name.
    outputs: BTreeMap<String, Expected>,
}

/// The input after Pillow's resize to the model's size.
#[derive(Debug, Deserialize)]
pub struct Preprocessed {
    /// The sha256 of the resized pixels (8-bit grey, row-major).
    pub resized_sha256: String,
    pub resized_mean: f64,
    /// A few pixels: (y, x, value).
    pub samples: Vec<(usize, usize, u8)>,
}

/// onnxruntime's output of one model file on one input: a probability for a classifier; for a
/// mask model its 16x16 block means, the pixels at or above 0.5 and, for the lung fields,
/// the chest score.
#[derive(Debug, Deserialize)]
struct Expected {
    probability: Option<f64>,
    grid16: Option<[[f64; 16]; 16]>,
    count_ge_0_5: Option<usize>,
    chest: Option<f64>,
}

/// How far one model's outputs are from onnxruntime's on one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// The largest difference in probability: the classifier's output; the lung-field
    /// model's chest score; and for a mask, the mean of each of 16x16 blocks.
    pub worst: f64,
    /// For a mask: pixels at or above 0.5 in tract's output and in onnxruntime's.
    pub mask_pixels: Option<(usize, usize)>,
}

impl Vectors {
    pub fn load(path: &Path) -> Result<Vectors, ReferenceError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReferenceError::Read {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let file: VectorsFile = serde_json::from_str(&text).map_err(|e| ReferenceError::Malformed {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(Vectors {
            path: path.into(),
            files: file.files,
            inputs: file.inputs,
        })
    }

    /// The sha256 of the model file the vectors hold outputs of, by file name.
    pub fn file_sha256(&self, file: &str) -> Option<&str> {
        self.files.get(file).map(String::as_str)
    }

    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Input {
    /// Where a shipped input lies, for models whose manifest is in `models_dir`; None for
    /// the inputs read from `../shared/data`, which only a checkout has.
    pub fn shipped_path(&self, models_dir: &Path) -> Option<PathBuf> {
        self.label.strip_prefix("models/").map(|rest| models_dir.join(rest))
    }

    /// Compare tract's `outputs` of `role`'s model `file` (every output, in the file's order)
    /// with onnxruntime's.
    pub fn difference(
        &self,
        role: Role,
        files: &ModelFiles,
        file: &str,
        outputs: &[Vec<f32>],
    ) -> Result<Difference, CompareError> {
        let at = || At {
            file: file.to_string(),
            input: self.label.clone(),
        };
        let expected = self.outputs.get(file).ok_or_else(|| CompareError::NoVectors(at()))?;
        let missing = |key: &'static str| CompareError::Missing { at: at(), key };
        let first = outputs.first().ok_or_else(|| CompareError::NoOutput(at()))?;
        match role {
            Role::Classifier => {
                let [p] = first[..] else {
                    return Err(CompareError::NotOneProbability {
                        at: at(),
                        count: first.len(),
                    });
                };
                Ok(Difference {
                    worst: (p as f64 - expected.probability.ok_or_else(|| missing("probability"))?).abs(),
                    mask_pixels: None,
                })
            }
            Role::Lungs | Role::Segmenter => {
                let grid = expected.grid16.as_ref().ok_or_else(|| missing("grid16"))?;
                let side = files
                    .grid()
                    .map(|(side, _)| side)
                    .ok_or_else(|| CompareError::NotAMaskModel(at()))?;
                if first.len() != side * side {
                    return Err(CompareError::NotAMask {
                        at: at(),
                        count: first.len(),
                        side,
                    });
                }
                let mut worst = grid_difference(side, first, grid);
                if role == Role::Lungs {
                    // the second output: the chest-or-not score
                    let chest = match outputs.get(1).map(|c| &c[..]) {
                        Some(&[c]) => c as f64,
                        _ => return Err(CompareError::NoChestScore(at())),
                    };
                    worst = worst.max((chest - expected.chest.ok_or_else(|| missing("chest"))?).abs());
                }
                let count = first.iter().filter(|&&p| p >= 0.5).count();
                Ok(Difference {
                    worst,
                    mask_pixels: Some((count, expected.count_ge_0_5.ok_or_else(|| missing("count_ge_0_5"))?)),
                })
            }
        }
    }
}

/// A model file on one input of the vectors.
#[derive(Debug, Clone)]
pub struct At {
    pub file: String,
    pub input: String,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.file, self.input)
    }
}

/// Why tract's outputs could not be held against the vectors: the vectors or the model
/// file are not the ones that belong together.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}: the vectors have no outputs of this file for this input")]
    NoVectors(At),
    #[error("{at}: no {key} in the vectors")]
    Missing { at: At, key: &'static str },
    #[error("{0}: the model gave no output")]
    NoOutput(At),
    #[error("{at}: the model gave {count} values, not one probability")]
    NotOneProbability { at: At, count: usize },
    #[error("{0}: the model gave no chest score")]
    NoChestScore(At),
    #[error("{0}: the manifest gives this model no mask grid")]
    NotAMaskModel(At),
    #[error("{at}: {count} values, not a {side}x{side} mask")]
    NotAMask { at: At, count: usize, side: usize },
}

/// The largest difference between the means of `mask`'s 16x16 blocks and onnxruntime's;
/// `mask` is `side` x `side`.
fn grid_difference(side: usize, mask: &[f32], grid: &[[f64; 16]; 16]) -> f64 {
    let block = side / 16;
    let mut worst = 0f64;
    for (gy, row) in grid.iter().enumerate() {
        for (gx, want) in row.iter().enumerate() {
            let sum: f64 = (gy * block..(gy + 1) * block)
                .flat_map(|y| (gx * block..(gx + 1) * block).map(move |x| mask[y * side + x] as f64))
                .sum();
            worst = worst.max((sum / (block * block) as f64 - want).abs());
        }
    }
    worst
}
