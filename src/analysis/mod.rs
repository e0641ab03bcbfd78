//! One radiograph through the whole model pipeline: decode, find the lung fields (and refuse
//! what is not a chest radiograph), classify, segment when positive, localise. Used as is by
//! `ptxd analyze` and by the daemon, so both give the same answer.
//!
//! Where the classifier and the segmenter are one file (the default release: the segmenter's
//! network scoring its own mask), the classifier's run gives the mask too, and a positive
//! image costs one network run, not two.

pub mod findings;
pub mod lungs;

use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::analysis::findings::{Finding, Mask, Thresholds, Verdict};
use crate::analysis::lungs::{LungField, NotChest};
use crate::base::files::sha256_hex;
use crate::base::outcome::{self, ErrorKind, Failure};
use crate::config::Limits;
use crate::model::infer::{InferError, Model, ModelVersions};
use crate::model::manifest::{LungThresholds, Manifest, Preprocess, Role};
use crate::model::preprocess::{model_input, resize_pil_bilinear, to_tensor};
use crate::pixels::decode::{self, DecodeError, Radiograph};
use crate::pixels::grey::GreyImage;

#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{file}: {source}")]
    Infer { file: String, source: Box<InferError> },
}

impl AnalysisError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AnalysisError::Decode(e) => e.kind(),
            AnalysisError::Infer { .. } => ErrorKind::Internal,
        }
    }

    pub fn into_failure(self) -> Failure {
        Failure {
            kind: self.kind(),
            message: self.to_string(),
        }
    }
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("models/manifest.toml: {0} output shape is not [1, 1, H, W]; regenerate the manifest with `make release`")]
    MaskShape(Role),
}

/// The three models, loaded once, and the thresholds to read them with.
pub struct Analyzer {
    lungs: Model,
    classifier: Model,
    segmenter: Model,
    /// Where the segmenter's mask is among the classifier's outputs, when both are one
    /// file: then the segmenter never runs on its own.
    mask_in_classifier: Option<usize>,
    lung_pre: Preprocess,
    lung_grid: (usize, usize),
    lung_thresholds: LungThresholds,
    classifier_pre: Preprocess,
    segmenter_pre: Preprocess,
    thresholds: Thresholds,
    limits: Limits,
}

/// Everything known about one analyzed radiograph.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub radiograph: Radiograph,
    /// The classifier's probability; None when the image was refused as not a chest
    /// radiograph (the classifier was not run: its number would mean nothing).
    pub probability: Option<f32>,
    pub verdict: Verdict,
    /// Why the image is not taken for a chest radiograph (with that verdict only).
    pub not_chest: Option<NotChest>,
    /// Present when the segmenter ran (positive verdict), even if empty.
    pub mask: Option<Mask>,
    pub findings: Vec<Finding>,
    /// Wall time of decode + inference + localisation, seconds.
    pub seconds: f64,
    /// Where that time went.
    pub stages: Stages,
}

/// Wall time of each step of one analysis (`ptxd bench --pipeline` reports them). A model's
/// time is its run alone; resizing and building its input tensor is `preprocess`. Steps that
/// did not run (the segmenter for a negative) stay zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stages {
    pub decode: Duration,
    pub preprocess: Duration,
    pub lungs: Duration,
    pub classifier: Duration,
    pub segmenter: Duration,
    /// Lung-field check and localisation: what turns model outputs into a verdict and findings.
    pub findings: Duration,
}

/// Time `step`, adding its duration to `total`.
fn timed<T>(total: &mut Duration, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = step();
    *total += started.elapsed();
    out
}

impl Analysis {
    /// False only when the image was cleared (`crate::base::outcome::needs_attention`).
    pub fn needs_attention(&self) -> bool {
        outcome::needs_attention(self.verdict)
    }

    /// Why there is no pneumothorax reading: only for a refused image.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.not_chest.as_ref().map(|_| ErrorKind::NotChest)
    }
}

impl Analyzer {
    /// Verify (sha256) and load the three models; read the thresholds from the manifest.
    pub fn load(manifest: &Manifest, variant: Option<&str>, limits: Limits) -> Result<Analyzer, SetupError> {
        let lungs = Model::load(manifest, Role::Lungs, variant)?;
        let classifier = Model::load(manifest, Role::Classifier, variant)?;
        let segmenter = match classifier.also_as(manifest, Role::Segmenter, variant)? {
            Some(shared) => shared,
            None => Model::load(manifest, Role::Segmenter, variant)?,
        };
        let mask_in_classifier = match segmenter.shares_plan_with(&classifier) {
            true => classifier.output_position(segmenter.output_name()),
            false => None,
        };
        let grid = |role| manifest.files(role).grid().ok_or(SetupError::MaskShape(role));
        let c = manifest.classifier.thresholds;
        let s = manifest.segmenter.thresholds;
        let thresholds = Thresholds {
            probability: c.probability,
            indeterminate_low: c.indeterminate_low,
            pixel: s.pixel,
            min_area_grid: s.min_area_pixels,
            grid: grid(Role::Segmenter)?,
        };
        Ok(Analyzer {
            lungs,
            classifier,
            segmenter,
            mask_in_classifier,
            lung_pre: manifest.lungs.preprocess.clone(),
            lung_grid: grid(Role::Lungs)?,
            lung_thresholds: manifest.lungs.thresholds,
            classifier_pre: manifest.classifier.preprocess.clone(),
            segmenter_pre: manifest.segmenter.preprocess.clone(),
            thresholds,
            limits,
        })
    }

    pub fn versions(&self) -> ModelVersions {
        let name = |m: &Model| format!("{} {}", m.version(), m.variant());
        ModelVersions {
            classifier: name(&self.classifier),
            segmenter: name(&self.segmenter),
            lungs: name(&self.lungs),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Whether one network run gives both the classifier's score and the segmenter's mask.
    pub fn runs_once(&self) -> bool {
        self.mask_in_classifier.is_some()
    }

    /// Decode and analyze one file.
    pub fn analyze_file(&self, path: &Path) -> Result<Analysis, AnalysisError> {
        let started = Instant::now();
        let bytes = decode::read_input(path, self.limits)?;
        let sha256 = sha256_hex(&bytes);
        self.analyze_bytes(path, &bytes, sha256, started)
    }

    /// A file's bytes, already read and hashed: the daemon hashes an input before anything
    /// else, to know one it has journaled already. Errors name `path`.
    pub fn analyze_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: String,
        started: Instant,
    ) -> Result<Analysis, AnalysisError> {
        let radiograph = decode::decode_hashed(bytes, sha256, self.limits).map_err(|why| DecodeError {
            file: path.to_path_buf(),
            why,
        })?;
        let decode = started.elapsed();
        let mut analysis = self
            .analyze(radiograph, started)
            .map_err(|source| AnalysisError::Infer {
                file: path.display().to_string(),
                source: Box::new(source),
            })?;
        analysis.stages.decode = decode;
        Ok(analysis)
    }

    /// The lung fields of a decoded image.
    pub fn lung_field(&self, image: &GreyImage) -> Result<LungField, InferError> {
        self.timed_lung_field(image, &mut Stages::default())
    }

    fn timed_lung_field(&self, image: &GreyImage, stages: &mut Stages) -> Result<LungField, InferError> {
        let pre = &self.lung_pre;
        let (resized, input) = timed(&mut stages.preprocess, || {
            let resized = resize_pil_bilinear(image, pre.width, pre.height);
            let input = to_tensor(&resized, pre);
            (resized, input)
        });
        let outputs = timed(&mut stages.lungs, || self.lungs.run_all(input))?;
        let started = Instant::now();
        let (w, h) = self.lung_grid;
        let (probs, chest) = match &outputs[..] {
            [probs, chest] if probs.len() == w * h && chest.len() == 1 => (probs, chest[0]),
            [probs, chest] => return Err(output_error(Role::Lungs, w * h + 1, probs.len() + chest.len())),
            other => {
                return Err(InferError::Run {
                    role: Role::Lungs,
                    reason: format!("gave {} outputs, the manifest says 2 (lungs, chest)", other.len()),
                })
            }
        };
        let field = LungField::new(probs, w, h, &resized.pixels, chest, &self.lung_thresholds);
        stages.findings += started.elapsed();
        Ok(field)
    }

    /// Analyze an already decoded radiograph (`started`: when its handling began): its size
    /// and lung fields first (is it a chest radiograph?), then the classifier, then the
    /// segmenter when the classifier is positive.
    pub fn analyze(&self, radiograph: Radiograph, started: Instant) -> Result<Analysis, InferError> {
        let mut stages = Stages::default();
        let mut analysis = Analysis {
            radiograph,
            probability: None,
            verdict: Verdict::NotChestRadiograph,
            not_chest: None,
            mask: None,
            findings: Vec::new(),
            seconds: 0.0,
            stages: Stages::default(),
        };
        // smaller than the classifier's input, an image would be read upsampled, with less in
        // it than any film the models learned from: refused before any model runs
        let (width, height) = (analysis.radiograph.image.width, analysis.radiograph.image.height);
        let min = self.classifier_pre.width.min(self.classifier_pre.height);
        if width.min(height) < min {
            analysis.not_chest = Some(NotChest::TooSmall { width, height, min });
            analysis.seconds = started.elapsed().as_secs_f64();
            return Ok(analysis);
        }
        let lungs = self.timed_lung_field(&analysis.radiograph.image, &mut stages)?;
        if let Err(why) = timed(&mut stages.findings, || lungs.check(&self.lung_thresholds)) {
            analysis.not_chest = Some(why);
            analysis.seconds = started.elapsed().as_secs_f64();
            analysis.stages = stages;
            return Ok(analysis);
        }
        let image = &analysis.radiograph.image;
        let pre = &self.classifier_pre;
        let (resized, input) = timed(&mut stages.preprocess, || {
            let resized = resize_pil_bilinear(image, pre.width, pre.height);
            let input = to_tensor(&resized, pre);
            (resized, input)
        });
        let mut outputs = timed(&mut stages.classifier, || self.classifier.run_all(input))?;
        let probability = match outputs[0][..] {
            [p] => p,
            ref other => return Err(output_error(Role::Classifier, 1, other.len())),
        };
        analysis.probability = Some(probability);
        analysis.verdict = self.thresholds.verdict(probability);
        if analysis.verdict == Verdict::Positive {
            let probs = match self.mask_in_classifier {
                // the same run's mask: the segmenter's file is the classifier's
                Some(i) => std::mem::take(&mut outputs[i]),
                None => {
                    let seg_pre = &self.segmenter_pre;
                    let input = timed(&mut stages.preprocess, || {
                        if (seg_pre.width, seg_pre.height) == (pre.width, pre.height) {
                            to_tensor(&resized, seg_pre)
                        } else {
                            model_input(image, seg_pre)
                        }
                    });
                    timed(&mut stages.segmenter, || self.segmenter.run(input))?
                }
            };
            let cells = self.thresholds.grid.0 * self.thresholds.grid.1;
            if probs.len() != cells {
                return Err(output_error(Role::Segmenter, cells, probs.len()));
            }
            let (w, h) = (image.width, image.height);
            let orientation = analysis.radiograph.orientation;
            let (mask, findings) = timed(&mut stages.findings, || {
                findings::localise(&probs, w, h, orientation, &lungs, &self.thresholds)
            });
            analysis.mask = Some(mask);
            analysis.findings = findings;
        }
        analysis.seconds = started.elapsed().as_secs_f64();
        analysis.stages = stages;
        Ok(analysis)
    }
}

/// A model whose output does not have the manifest's size: never trust it.
fn output_error(role: Role, expected: usize, got: usize) -> InferError {
    InferError::Run {
        role,
        reason: format!("gave {got} output values, the manifest says {expected}"),
    }
}
