//! `ptxd bench --pipeline`: where the time goes for one radiograph, measured like a user
//! would see it. Each image runs through the daemon's own steps (decode, preprocess, the three
//! models, findings, the result screen rendered and encoded, the overlay and mask written
//! durably, the record appended and fsynced to a journal) a number of times after one warm-up
//! run; each step's median and spread and the whole image's are printed, with the process's
//! peak RSS (all models loaded).
//!
//! Why a subcommand and not only `cargo bench`: it runs on the board, with the installed
//! models, where the numbers matter. `benches/onnxruntime_ratio.py` runs onnxruntime on the
//! same files and inputs in the same run and prints the ratios (`docs/performance.md`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::analysis::{Analyzer, Stages};
use crate::base::files;
use crate::base::timings::Timings;
use crate::config::OverlaySize;
use crate::record::journal::{Journal, Record};
use crate::record::render::result_frame;

/// The steps reported, in pipeline order.
pub const STEPS: [&str; 10] = [
    "decode",
    "preprocess",
    "lungs",
    "classifier",
    "segmenter",
    "findings",
    "render",
    "write files",
    "journal",
    "total",
];

/// One timed run of one image: a duration per [`STEPS`] entry.
#[derive(Debug, Clone, Copy)]
struct Run([Duration; STEPS.len()]);

/// The timings of one image over its runs.
#[derive(Debug, Clone)]
pub struct ImageReport {
    pub file: PathBuf,
    /// The verdict of the last run, so that a reader knows whether the segmenter ran.
    pub verdict: String,
    /// The classifier's run gave the segmenter's mask too (one file for both): the
    /// segmenter step is then 0 and the network's time is all in "classifier".
    pub one_network_run: bool,
    pub runs: usize,
    /// Per step: (median, fastest, slowest), seconds.
    pub steps: Vec<(&'static str, f64, f64, f64)>,
}

/// Time `runs` runs (after one warm-up) of each file through the whole pipeline. The
/// overlay, mask and journal are written in a folder made under `scratch` and removed
/// afterwards: give the disk the daemon writes to, since fsync is what costs there.
pub fn pipeline(
    analyzer: &Analyzer,
    files: &[PathBuf],
    runs: usize,
    overlay_size: OverlaySize,
    scratch: &Path,
) -> Result<Vec<ImageReport>, Box<dyn std::error::Error>> {
    let dir = scratch.join(format!("ptxd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let result = (|| {
        let mut journal = Journal::open(&dir.join("journal.log"))?;
        let mut reports = Vec::new();
        for file in files {
            let mut times = Vec::with_capacity(runs);
            let mut verdict = String::new();
            for run in 0..=runs.max(1) {
                let (timing, v) = run_once(analyzer, file, overlay_size, &dir, &mut journal)?;
                verdict = v;
                if run > 0 {
                    times.push(timing);
                }
            }
            let mut report = summarise(file, verdict, &times);
            report.one_network_run = analyzer.runs_once();
            reports.push(report);
        }
        Ok(reports)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_once(
    analyzer: &Analyzer,
    file: &Path,
    overlay_size: OverlaySize,
    scratch: &Path,
    journal: &mut Journal,
) -> Result<(Run, String), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let analysis = analyzer.analyze_file(file)?;
    let Stages {
        decode,
        preprocess,
        lungs,
        classifier,
        segmenter,
        findings,
    } = analysis.stages;
    let models = analyzer.versions();
    let record = Record::analyzed(
        format!("bench:{}", file.display()),
        Some(analysis.radiograph.sha256.clone()),
        models,
        &analysis,
    );

    let t = Instant::now();
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let frame = result_frame(&analysis, overlay_size, &record.models, &record.time, &name);
    let overlay_png = frame.to_png();
    let mask_png = analysis.mask.as_ref().map(|m| m.to_png());
    let render = t.elapsed();

    let t = Instant::now();
    files::write_durably(&scratch.join("overlay.png"), &overlay_png)?;
    if let Some(png) = mask_png {
        files::write_durably(&scratch.join("mask.png"), &png)?;
    }
    let write = t.elapsed();

    let t = Instant::now();
    journal.append(record)?;
    let append = t.elapsed();
    let total = started.elapsed();
    let steps = [
        decode, preprocess, lungs, classifier, segmenter, findings, render, write, append, total,
    ];
    Ok((Run(steps), analysis.verdict.to_string()))
}

fn summarise(file: &Path, verdict: String, times: &[Run]) -> ImageReport {
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let t = Timings::from_seconds(times.iter().map(|r| r.0[i].as_secs_f64()).collect());
            (name, t.median(), t.min(), t.max())
        })
        .collect();
    ImageReport {
        file: file.to_path_buf(),
        verdict,
        one_network_run: false,
        runs: times.len(),
        steps,
    }
}

impl ImageReport {
    /// The step's median in seconds.
    pub fn median(&self, step: &str) -> Option<f64> {
        self.steps.iter().find(|s| s.0 == step).map(|s| s.1)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let steps: serde_json::Map<String, serde_json::Value> = self
            .steps
            .iter()
            .map(|&(name, median, min, max)| {
                (
                    name.to_string(),
                    serde_json::json!({"median_s": median, "min_s": min, "max_s": max}),
                )
            })
            .collect();
        serde_json::json!({
            "file": self.file.display().to_string(),
            "verdict": self.verdict,
            "one_network_run": self.one_network_run,
            "runs": self.runs,
            "steps": steps,
        })
    }
}

impl std::fmt::Display for ImageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.median("total").unwrap_or(f64::NAN);
        writeln!(
            f,
            "{} ({}, {} runs): {:.3} s an image (median)",
            self.file.display(),
            self.verdict,
            self.runs,
            total
        )?;
        if self.one_network_run {
            writeln!(
                f,
                "  (one network run gives the classifier's score and the segmenter's mask)"
            )?;
        }
        writeln!(
            f,
            "  {:<12} {:>10} {:>10} {:>10} {:>7}",
            "step", "median ms", "min ms", "max ms", "share"
        )?;
        for &(name, median, min, max) in &self.steps {
            let share = if name == "total" { 1.0 } else { median / total };
            writeln!(
                f,
                "  {name:<12} {:>10.2} {:>10.2} {:>10.2} {:>6.1}%",
                median * 1e3,
                min * 1e3,
                max * 1e3,
                share * 100.0
            )?;
        }
        Ok(())
    }
}

/// The process's peak resident memory (VmHWM), in bytes; None where /proc does not say.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
