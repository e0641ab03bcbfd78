//! `ptxd analyze FILE...`: each radiograph through the same [`Analyzer`] the daemon uses, one
//! line per file (the result contract's JSON with `--json`), masks and result screens
//! written where asked.

use std::path::{Path, PathBuf};

use ptxd::analysis::{Analysis, AnalysisError, Analyzer};
use ptxd::base::files;
use ptxd::base::outcome::{self, ErrorKind, Failure, Verdict};
use ptxd::config::{Limits, OverlaySize};
use ptxd::daemon;
use ptxd::model::infer::ModelVersions;
use ptxd::model::manifest::Manifest;
use ptxd::record::journal::Record;

/// Where `analyze` writes besides standard output, and how it prints.
pub struct Outputs {
    pub json: bool,
    pub mask_dir: Option<PathBuf>,
    pub overlay_dir: Option<PathBuf>,
    pub overlay_size: OverlaySize,
}

/// Analyze every file; Ok(true) when all were analyzed.
pub fn analyze(
    manifest: &Path,
    variant: Option<&str>,
    limits: Limits,
    out: &Outputs,
    files: &[PathBuf],
) -> Result<bool, Box<dyn std::error::Error>> {
    let manifest = Manifest::load(manifest)?;
    let analyzer = Analyzer::load(&manifest, variant, limits)?;
    for dir in [&out.mask_dir, &out.overlay_dir].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    }
    let mut all_ok = true;
    for file in files {
        let analyze = || {
            let a = analyzer.analyze_file(file).map_err(AnalysisError::into_failure)?;
            let written = write_outputs(&analyzer, &a, file, out).map_err(|message| Failure {
                kind: ErrorKind::Io,
                message,
            })?;
            Ok((a, written))
        };
        // one file's internal error (a panic in a decoder or tract) must not stop the others
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(analyze)).unwrap_or_else(|panic| {
            Err(Failure {
                kind: ErrorKind::Internal,
                message: format!("{}: internal error: {}", file.display(), daemon::panic_text(&*panic)),
            })
        });
        // an image refused from its header was read: a result, as a refusal by the models is
        all_ok &= result
            .as_ref()
            .map_or_else(|f| outcome::failure_verdict(f.kind) != Verdict::NotAnalyzed, |_| true);
        print_result(file, &result, out.json, analyzer.versions());
    }
    Ok(all_ok)
}

/// Mask and overlay files for one analysis: (mask path, overlay path).
fn write_outputs(
    analyzer: &Analyzer,
    a: &Analysis,
    file: &Path,
    out: &Outputs,
) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let write = |path: PathBuf, bytes: Vec<u8>| {
        std::fs::write(&path, bytes)
            .map(|_| path.clone())
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))
    };
    let mask = match (&a.mask, &out.mask_dir) {
        (Some(mask), Some(dir)) => Some(write(dir.join(format!("{stem}.png")), mask.to_png())?),
        _ => None,
    };
    let overlay = match &out.overlay_dir {
        Some(dir) => {
            let fb = ptxd::record::render::result_frame(
                a,
                out.overlay_size,
                &analyzer.versions(),
                &files::now_rfc3339(),
                &name,
            );
            Some(write(dir.join(format!("{stem}.png")), fb.to_png())?)
        }
        None => None,
    };
    Ok((mask, overlay))
}

type Outcome = Result<(Analysis, (Option<PathBuf>, Option<PathBuf>)), Failure>;

/// One `analyze --json` line: the result contract (docs/contract.md), every field on every
/// line, null where it does not apply.
#[derive(serde::Serialize)]
struct AnalyzeLine<'a> {
    v: u32,
    file: String,
    verdict: Verdict,
    needs_attention: bool,
    probability: Option<f32>,
    findings: Vec<ptxd::analysis::findings::Finding>,
    width: Option<usize>,
    height: Option<usize>,
    format: Option<ptxd::pixels::decode::InputFormat>,
    orientation: Option<ptxd::pixels::decode::Orientation>,
    input_sha256: Option<&'a str>,
    mask: Option<String>,
    overlay: Option<String>,
    seconds: Option<f64>,
    error_kind: Option<ErrorKind>,
    error: Option<String>,
}

impl<'a> AnalyzeLine<'a> {
    /// The contract's fields come from the journal's [`Record`] (one mapping of an analysis
    /// to a result, shared with the daemon); the image's from the analysis.
    fn new(file: &Path, result: &'a Outcome, models: ModelVersions) -> AnalyzeLine<'a> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let source = file.display().to_string();
        let (record, analysis, (mask, overlay)) = match result {
            Ok((a, written)) => {
                let sha = Some(a.radiograph.sha256.clone());
                (Record::analyzed(source.clone(), sha, models, a), Some(a), written)
            }
            Err(failure) => (
                Record::failure(source.clone(), None, models, failure),
                None,
                &(None, None),
            ),
        };
        let image = analysis.map(|a| &a.radiograph);
        AnalyzeLine {
            v: record.v,
            file: source,
            verdict: record.verdict,
            needs_attention: record.needs_attention,
            probability: record.probability,
            findings: record.findings,
            width: image.map(|r| r.image.width),
            height: image.map(|r| r.image.height),
            format: image.map(|r| r.format),
            orientation: image.map(|r| r.orientation),
            input_sha256: image.map(|r| r.sha256.as_str()),
            mask: path(mask),
            overlay: path(overlay),
            seconds: analysis.map(|a| a.seconds),
            error_kind: record.error_kind,
            error: record.error,
        }
    }
}

fn print_result(file: &Path, result: &Outcome, json: bool, models: ModelVersions) {
    if json {
        println!(
            "{}",
            serde_json::to_string(&AnalyzeLine::new(file, result, models)).expect("serialises")
        );
        return;
    }
    match result {
        Ok((a, _)) => {
            let (banner, _) = ptxd::record::render::banner(a.verdict, &a.findings);
            match (&a.not_chest, a.probability) {
                (Some(why), _) => println!("{}: {}: {banner}: {why}", file.display(), a.verdict),
                (None, Some(p)) => println!("{}: {} (p={p:.3}): {banner}", file.display(), a.verdict),
                (None, None) => println!("{}: {}: {banner}", file.display(), a.verdict),
            }
        }
        Err(failure) => {
            // the message names the file already (the daemon logs it as it is)
            let prefix = format!("{}: ", file.display());
            let reason = failure.message.strip_prefix(&prefix).unwrap_or(&failure.message);
            println!(
                "{}: {} ({}): {reason}",
                file.display(),
                outcome::failure_verdict(failure.kind),
                failure.kind
            );
        }
    }
}
