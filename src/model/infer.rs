//! The int8 ONNX models (lung fields, classifier, segmenter), run through tract.
//!
//! A model is loaded once: its file is checked against the manifest's sha256, parsed, given
//! the manifest's static input shape, optimised and turned into a runnable plan. All of that
//! is start-up work; [`Model::run`] then only executes the plan.
//!
//! Outputs are found by the names the manifest gives them, not by position. Two roles that
//! name one file (the default classifier is the segmenter's network scoring its own mask)
//! share one loaded plan ([`Model::also_as`]): the analysis runs it once for both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::model::manifest::{Manifest, ManifestError, ModelFiles, Role, Variant};

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("model {role} has no variant {variant:?} in the manifest (known: {known})")]
    UnknownVariant { role: Role, variant: String, known: String },
    #[error("cannot load model file {path} into tract: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("model {role} got an input of {got} values, expected {expected}")]
    InputSize { role: Role, got: usize, expected: usize },
    #[error("model {role} failed to run: {reason}")]
    Run { role: Role, reason: String },
    #[error("model file {path} has no output {name:?} (its outputs: {found}); the manifest does not belong to this file: reinstall the models/ directory")]
    NoOutput { path: PathBuf, name: String, found: String },
}

/// The model versions a result was produced with (journaled and reported with it).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelVersions {
    pub classifier: String,
    pub segmenter: String,
    /// The lung-field model (journal records written before it existed have none).
    #[serde(default)]
    pub lungs: String,
}

impl ModelVersions {
    /// A short label for a small screen: "models 20261128 int8" when the three come from one
    /// release (their versions end in the same date and variant, as `make release` names
    /// them), else all three in full. The journal always has them in full.
    pub fn label(&self) -> String {
        let release = |v: &str| v.rsplit_once('-').map(|(_, tail)| tail.to_string());
        match (
            release(&self.lungs),
            release(&self.classifier),
            release(&self.segmenter),
        ) {
            (Some(l), Some(c), Some(s)) if l == c && c == s => format!("models {c}"),
            _ => format!("{} / {} / {}", self.lungs, self.classifier, self.segmenter),
        }
    }
}

/// A loaded, optimised model, ready to run.
pub struct Model {
    role: Role,
    variant: String,
    version: String,
    path: PathBuf,
    /// The sha256 its file was checked against at load.
    sha256: String,
    input_shape: Vec<usize>,
    /// The role's output names, as the manifest lists them: its `output`, then its
    /// `extra_outputs`.
    outputs: Vec<String>,
    /// Where each of `outputs` is among the plan's outputs.
    picks: Vec<usize>,
    plan: Arc<Plan>,
}

/// A runnable plan and the names of its outputs, in the file's order.
pub struct Plan {
    pub runnable: Arc<TypedRunnableModel>,
    pub output_names: Vec<String>,
}

/// Use `threads` inference threads for every model (tract's matrix kernels); call once at start-up.
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads > 1 {
        set_default_executor(Executor::multithread(threads));
    } else {
        set_default_executor(Executor::SingleThread);
    }
}

/// The instruction-set features tract found on this CPU, which pick its kernels: on aarch64,
/// "dotprod" means the SDOT int8 kernel (Pi 5, Orin) and its absence the SMLAL one (Pi 4).
/// tract's `TRACT_DOTPROD_DISABLE=1` and `TRACT_CPU_ISA` edit the set, so one binary can be
/// tested on either path. Printed by `check-models` and `doctor` as evidence of the path taken.
pub fn cpu_features() -> String {
    format!("{:?}", tract_linalg::isa::native())
}

/// One role's file, found through the manifest and checked against its sha256.
pub struct VerifiedFile<'m> {
    pub files: ModelFiles<'m>,
    /// The variant's name (`"int8"`, ...).
    pub name: &'m str,
    pub path: PathBuf,
    /// The sha256 the file was checked against (the manifest's).
    pub sha256: &'m str,
}

/// Find a role's variant (None: the manifest's default) and check its file's sha256, without
/// loading it: the first step of [`Model::load`], and all that `doctor --quick` does.
pub fn verify<'m>(manifest: &'m Manifest, role: Role, variant: Option<&str>) -> Result<VerifiedFile<'m>, InferError> {
    let (files, name, v) = find(manifest, role, variant)?;
    let path = manifest.verified_path(v)?;
    Ok(VerifiedFile {
        files,
        name,
        path,
        sha256: &v.sha256,
    })
}

/// A role's variant in the manifest (None: its default), its file not yet read.
fn find<'m>(
    manifest: &'m Manifest,
    role: Role,
    variant: Option<&str>,
) -> Result<(ModelFiles<'m>, &'m str, &'m Variant), InferError> {
    let files = manifest.files(role);
    let (name, v) = files.variant(variant).ok_or_else(|| InferError::UnknownVariant {
        role,
        variant: variant.unwrap_or_default().into(),
        known: files.variants.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    Ok((files, name, v))
}

impl Model {
    /// Verify and load one model role from the manifest; `variant` None means the
    /// manifest's default variant.
    pub fn load(manifest: &Manifest, role: Role, variant: Option<&str>) -> Result<Model, InferError> {
        let file = verify(manifest, role, variant)?;
        let plan = Arc::new(load_plan(&file.path, &file.files.input.shape)?);
        Model::on_plan(file, role, plan)
    }

    /// `role` as well, when its variant names this model's file with the same input: the
    /// same plan (loaded once, in memory once) read through `role`'s outputs, so that one
    /// run serves both. None when `role` has a file of its own.
    ///
    /// The file is not hashed again: this model's load checked it against the same sha256.
    pub fn also_as(&self, manifest: &Manifest, role: Role, variant: Option<&str>) -> Result<Option<Model>, InferError> {
        let (files, name, v) = find(manifest, role, variant)?;
        let path = manifest.path(v);
        let same_file = path == self.path && v.sha256.eq_ignore_ascii_case(&self.sha256);
        if !same_file || files.input.shape != self.input_shape {
            return Ok(None);
        }
        let file = VerifiedFile {
            files,
            name,
            path,
            sha256: &v.sha256,
        };
        Model::on_plan(file, role, self.plan.clone()).map(Some)
    }

    fn on_plan(file: VerifiedFile, role: Role, plan: Arc<Plan>) -> Result<Model, InferError> {
        let VerifiedFile {
            files,
            name,
            path,
            sha256,
        } = file;
        let outputs: Vec<String> = std::iter::once(files.output)
            .chain(files.extra_outputs)
            .map(|o| o.name.clone())
            .collect();
        let picks = outputs
            .iter()
            .map(|wanted| {
                plan.output_names
                    .iter()
                    .position(|n| n == wanted)
                    .ok_or_else(|| InferError::NoOutput {
                        path: path.clone(),
                        name: wanted.clone(),
                        found: plan.output_names.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Model {
            role,
            variant: name.into(),
            version: files.version.into(),
            path,
            sha256: sha256.into(),
            input_shape: files.input.shape.clone(),
            outputs,
            picks,
            plan,
        })
    }

    /// Whether `other` runs the same loaded plan (one run gives both their outputs).
    pub fn shares_plan_with(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan)
    }

    /// Where the output `name` is among [`Model::run_all`]'s.
    pub fn output_position(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|n| n == name)
    }

    /// The role's own output's name (the manifest's `output`).
    pub fn output_name(&self) -> &str {
        &self.outputs[0]
    }

    /// Run on one NCHW input tensor; returns the role's output (the manifest's `output`),
    /// flattened.
    pub fn run(&self, input: Vec<f32>) -> Result<Vec<f32>, InferError> {
        Ok(self.run_all(input)?.swap_remove(0))
    }

    /// Run on one NCHW input tensor; returns the role's outputs, each flattened, in the
    /// manifest's order: its `output`, then its `extra_outputs`.
    pub fn run_all(&self, input: Vec<f32>) -> Result<Vec<Vec<f32>>, InferError> {
        let expected: usize = self.input_shape.iter().product();
        if input.len() != expected {
            return Err(InferError::InputSize {
                role: self.role,
                got: input.len(),
                expected,
            });
        }
        let run_err = |e: TractError| InferError::Run {
            role: self.role,
            reason: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&self.input_shape, &input).map_err(run_err)?;
        let outputs = self.plan.runnable.run(tvec!(tensor.into_tvalue())).map_err(run_err)?;
        self.picks
            .iter()
            .map(|&i| {
                let o = outputs.get(i).ok_or_else(|| InferError::Run {
                    role: self.role,
                    reason: format!(
                        "gave {} outputs, expected {}",
                        outputs.len(),
                        self.plan.output_names.len()
                    ),
                })?;
                Ok(o.to_plain_array_view::<f32>()
                    .map_err(run_err)?
                    .iter()
                    .copied()
                    .collect())
            })
            .collect()
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn variant(&self) -> &str {
        &self.variant
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parse, type, optimise and plan an ONNX file for a fixed input shape.
pub fn load_plan(path: &Path, shape: &[usize]) -> Result<Plan, InferError> {
    let load_err = |e: TractError| InferError::Load {
        path: path.into(),
        reason: format!("{e:#}"),
    };
    let model = tract_onnx::onnx().model_for_path(path).map_err(load_err)?;
    // the file's output names, read before optimisation: its passes keep the outputs' order,
    // not necessarily their labels
    let output_names = model
        .output_outlets()
        .map_err(load_err)?
        .iter()
        .map(|&o| model.outlet_label(o).unwrap_or_default().to_string())
        .collect();
    let runnable = model
        .with_input_fact(0, f32::fact(shape).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(load_err)?;
    Ok(Plan { runnable, output_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_release_gets_a_short_label_and_a_mix_is_spelt_out() {
        let mut v = ModelVersions {
            classifier: "ptx-cls-segscore-unetpp-effnetlite0-int8-20261128 int8".into(),
            segmenter: "ptx-seg-unetpp-effnetlite0-int8-20261128 int8".into(),
            lungs: "ptx-lungs-unetpp-effnetlite0-int8-20261128 int8".into(),
        };
        assert_eq!(v.label(), "models 20261128 int8");
        v.classifier = "ptx-cls-densenet121-int8-20261127 int8-qdq".into();
        assert!(
            v.label().contains("densenet121") && v.label().contains("ptx-seg"),
            "{}",
            v.label()
        );
    }
}
