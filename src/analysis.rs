//! One radiograph through the whole model pipeline: decode, classify, segment when positive,
//! localise. Used as is by `ptxd analyze` and by the daemon, so both give the same answer.

use std::path::Path;
use std::time::Instant;

use thiserror::Error;

use crate::config::Limits;
use crate::decode::{self, DecodeError, Radiograph};
use crate::findings::{self, Finding, Mask, Thresholds, Verdict};
use crate::infer::{InferError, Model, ModelVersions};
use crate::manifest::{Manifest, ModelEntry};
use crate::preprocess::{resize_pil_bilinear, to_tensor};

#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{file}: {source}")]
    Infer { file: String, source: Box<InferError> },
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("models/manifest.toml: {role} has no threshold {name:?}; regenerate the manifest with `make release`")]
    MissingThreshold { role: &'static str, name: &'static str },
    #[error("models/manifest.toml: segmenter output shape {0:?} is not [1, 1, H, W]")]
    MaskShape(Vec<usize>),
}

/// Both models, loaded once, and the thresholds to read them with.
pub struct Analyzer {
    classifier: Model,
    segmenter: Model,
    classifier_entry: ModelEntry,
    segmenter_entry: ModelEntry,
    thresholds: Thresholds,
    limits: Limits,
}

/// Everything known about one analyzed radiograph.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub radiograph: Radiograph,
    pub probability: f32,
    pub verdict: Verdict,
    /// Present when the segmenter ran (positive verdict), even if empty.
    pub mask: Option<Mask>,
    pub findings: Vec<Finding>,
    /// Wall time of decode + inference + localisation, seconds.
    pub seconds: f64,
}

impl Analysis {
    pub fn pneumothorax(&self) -> bool {
        self.verdict == Verdict::Positive
    }
}

impl Analyzer {
    /// Verify (sha256) and load both models; read the thresholds from the manifest.
    pub fn load(manifest: &Manifest, variant: Option<&str>, limits: Limits) -> Result<Analyzer, SetupError> {
        let classifier = Model::load(manifest, "classifier", variant)?;
        let segmenter = Model::load(manifest, "segmenter", variant)?;
        let threshold = |entry: &ModelEntry, role: &'static str, name: &'static str| {
            entry
                .thresholds
                .get(name)
                .map(|&v| v as f32)
                .ok_or(SetupError::MissingThreshold { role, name })
        };
        let probability = threshold(&manifest.classifier, "classifier", "probability")?;
        let indeterminate_low =
            threshold(&manifest.classifier, "classifier", "indeterminate_low").unwrap_or(probability);
        let shape = &manifest.segmenter.output.shape;
        let grid = match shape[..] {
            [1, 1, h, w] => (w, h),
            _ => return Err(SetupError::MaskShape(shape.clone())),
        };
        let thresholds = Thresholds {
            probability,
            indeterminate_low,
            pixel: threshold(&manifest.segmenter, "segmenter", "pixel")?,
            min_area_grid: threshold(&manifest.segmenter, "segmenter", "min_area_pixels")?,
            grid,
        };
        Ok(Analyzer {
            classifier,
            segmenter,
            classifier_entry: manifest.classifier.clone(),
            segmenter_entry: manifest.segmenter.clone(),
            thresholds,
            limits,
        })
    }

    pub fn versions(&self) -> ModelVersions {
        ModelVersions {
            classifier: format!("{} {}", self.classifier.version(), self.classifier.variant()),
            segmenter: format!("{} {}", self.segmenter.version(), self.segmenter.variant()),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Decode and analyze one file.
    pub fn analyze_file(&self, path: &Path) -> Result<Analysis, AnalysisError> {
        let started = Instant::now();
        let radiograph = decode::decode_file(path, self.limits)?;
        self.analyze(radiograph, started)
            .map_err(|source| AnalysisError::Infer {
                file: path.display().to_string(),
                source: Box::new(source),
            })
    }

    /// Analyze an already decoded radiograph (`started`: when its handling began).
    pub fn analyze(&self, radiograph: Radiograph, started: Instant) -> Result<Analysis, InferError> {
        let pre = &self.classifier_entry.preprocess;
        let resized = resize_pil_bilinear(&radiograph.image, pre.width, pre.height);
        let probability = match self.classifier.run(to_tensor(&resized, pre))?[..] {
            [p] => p,
            ref other => return Err(self.output_error("classifier", 1, other.len())),
        };
        let verdict = self.thresholds.verdict(probability);
        let (mask, findings) = if verdict == Verdict::Positive {
            let seg_pre = &self.segmenter_entry.preprocess;
            let input = if (seg_pre.width, seg_pre.height) == (pre.width, pre.height) {
                to_tensor(&resized, seg_pre)
            } else {
                to_tensor(
                    &resize_pil_bilinear(&radiograph.image, seg_pre.width, seg_pre.height),
                    seg_pre,
                )
            };
            let probs = self.segmenter.run(input)?;
            let cells = self.thresholds.grid.0 * self.thresholds.grid.1;
            if probs.len() != cells {
                return Err(self.output_error("segmenter", cells, probs.len()));
            }
            let (w, h) = (radiograph.image.width, radiograph.image.height);
            let (mask, findings) = findings::localise(&probs, w, h, radiograph.orientation, &self.thresholds);
            (Some(mask), findings)
        } else {
            (None, Vec::new())
        };
        Ok(Analysis {
            radiograph,
            probability,
            verdict,
            mask,
            findings,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// A model whose output does not have the manifest's size: never trust it.
    fn output_error(&self, role: &str, expected: usize, got: usize) -> InferError {
        InferError::Run {
            role: role.into(),
            reason: format!("gave {got} output values, the manifest says {expected}"),
        }
    }
}
