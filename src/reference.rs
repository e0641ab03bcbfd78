//! The reference vectors: what onnxruntime computed on each shipped model file for a few
//! inputs (`models/reference/vectors.json`, written by `ptx_training.reference`), and how far
//! tract on this machine is from it.
//!
//! Two users: `bench --choose` admits a variant on this CPU only when every model stays within
//! the manifest's tolerance on the inputs shipped with the models (the phantoms under
//! `models/reference/`), and `tests/reference_vectors.rs` holds every file to it on real
//! radiographs too, on x86 and on both aarch64 int8 kernel paths.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::manifest::{ModelFiles, Role};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read the reference vectors {path}: {reason} (they ship in models/reference/)")]
    Read { path: PathBuf, reason: String },
    #[error("reference vectors {path}: {reason} (regenerate them with python -m ptx_training.reference)")]
    Malformed { path: PathBuf, reason: String },
}

/// The vectors file, parsed.
pub struct Vectors {
    path: PathBuf,
    /// The sha256 of each model file the vectors were computed from.
    files: serde_json::Map<String, Value>,
    inputs: Vec<Input>,
}

/// One input the vectors were computed on, and onnxruntime's outputs for every file.
pub struct Input {
    /// As written in the vectors: `models/reference/...` (shipped with the models) or
    /// `../shared/data/...` (read by the tests beside a checkout, never shipped).
    pub label: String,
    pub sha256: String,
    /// The pixels after the resize, as Pillow made them (`preprocessed` in the vectors).
    pub preprocessed: Value,
    outputs: Value,
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
        let malformed = |reason: String| ReferenceError::Malformed {
            path: path.into(),
            reason,
        };
        let json: Value = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let records = json["inputs"].as_array().ok_or_else(|| malformed("no inputs".into()))?;
        let inputs = records
            .iter()
            .map(|rec| {
                let text = |key: &str| {
                    rec[key]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| malformed(format!("an input without {key}")))
                };
                Ok(Input {
                    label: text("input")?,
                    sha256: text("input_sha256")?,
                    preprocessed: rec["preprocessed"].clone(),
                    outputs: rec["outputs"].clone(),
                })
            })
            .collect::<Result<_, ReferenceError>>()?;
        let files = json["files"]
            .as_object()
            .cloned()
            .ok_or_else(|| malformed("no files".into()))?;
        Ok(Vectors {
            path: path.into(),
            files,
            inputs,
        })
    }

    /// The sha256 of the model file the vectors hold outputs of, by file name.
    pub fn file_sha256(&self, file: &str) -> Option<&str> {
        self.files.get(file).and_then(Value::as_str)
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
    ) -> Result<Difference, String> {
        let expected = &self.outputs[file];
        if expected.is_null() {
            return Err(format!("the vectors have no outputs of {file} for {}", self.label));
        }
        let number = |key: &str| {
            expected[key]
                .as_f64()
                .ok_or_else(|| format!("{file} on {}: no {key} in the vectors", self.label))
        };
        let first = outputs.first().ok_or_else(|| format!("{file} gave no output"))?;
        match role {
            Role::Classifier => {
                let [p] = first[..] else {
                    return Err(format!("{file} gave {} values, not one probability", first.len()));
                };
                Ok(Difference {
                    worst: (p as f64 - number("probability")?).abs(),
                    mask_pixels: None,
                })
            }
            Role::Lungs | Role::Segmenter => {
                let mut worst = grid_difference(files, first, &expected["grid16"])
                    .map_err(|e| format!("{file} on {}: {e}", self.label))?;
                if role == Role::Lungs {
                    // the second output: the chest-or-not score
                    let chest = match outputs.get(1).map(|c| &c[..]) {
                        Some(&[c]) => c as f64,
                        _ => return Err(format!("{file} gave no chest score")),
                    };
                    worst = worst.max((chest - number("chest")?).abs());
                }
                let count = first.iter().filter(|&&p| p >= 0.5).count();
                Ok(Difference {
                    worst,
                    mask_pixels: Some((count, number("count_ge_0_5")? as usize)),
                })
            }
        }
    }
}

/// The largest difference between the means of `mask`'s 16x16 blocks and onnxruntime's.
fn grid_difference(files: &ModelFiles, mask: &[f32], grid: &Value) -> Result<f64, String> {
    let (side, _) = files.grid().ok_or("not a mask model")?;
    if mask.len() != side * side {
        return Err(format!("{} values, not a {side}x{side} mask", mask.len()));
    }
    let block = side / 16;
    let rows = grid
        .as_array()
        .filter(|r| r.len() == 16)
        .ok_or("no 16x16 grid in the vectors")?;
    let mut worst = 0f64;
    for (gy, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .filter(|c| c.len() == 16)
            .ok_or("a grid row is not 16 cells")?;
        for (gx, cell) in cells.iter().enumerate() {
            let want = cell.as_f64().ok_or("a grid cell is not a number")?;
            let sum: f64 = (gy * block..(gy + 1) * block)
                .flat_map(|y| (gx * block..(gx + 1) * block).map(move |x| mask[y * side + x] as f64))
                .sum();
            worst = worst.max((sum / (block * block) as f64 - want).abs());
        }
    }
    Ok(worst)
}
