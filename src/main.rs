//! The `ptxd` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ptxd::analysis::{Analysis, AnalysisError, Analyzer};
use ptxd::config::Limits;
use ptxd::config::{Config, OverlaySize};
use ptxd::daemon::{self, Daemon};
use ptxd::infer::{self, Model};
use ptxd::journal;
use ptxd::manifest::{Manifest, Role};
use ptxd::outcome::{self, ErrorKind, Failure, Verdict};
use ptxd::timings::Timings;
use ptxd::variant;

#[derive(Parser)]
#[command(
    name = "ptxd",
    version,
    about = "Pneumothorax triage beside a portable X-ray digitizer (not a diagnosis)"
)]
struct Cli {
    /// The model manifest; model files are read from its folder. Default: $PTXD_MANIFEST,
    /// else models/manifest.toml here, else the models installed beside the binary or in
    /// /usr/share/ptxd/models.
    #[arg(long, global = true)]
    manifest: Option<PathBuf>,
    /// Inference threads (for `run`, the config's models.threads applies).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Log debug messages too.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyze radiograph files (DICOM, PNG, JPEG, TIFF): one line per file. Exit 0 when every
    /// file was analyzed, 2 when any could not be (the others still are).
    Analyze {
        /// One JSON object per line, the result contract v2 (docs/contract.md): verdict,
        /// needs_attention, probability, findings, error_kind, error...
        #[arg(long)]
        json: bool,
        /// Write each positive input's mask here as `<input stem>.png` (8-bit 0/255, input size).
        #[arg(long)]
        mask_dir: Option<PathBuf>,
        /// Write each input's result screen here as `<input stem>.png`.
        #[arg(long)]
        overlay_dir: Option<PathBuf>,
        /// Overlay size, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x720", value_parser = parse_size)]
        overlay_size: OverlaySize,
        /// Refuse images with more pixels than this.
        #[arg(long, default_value_t = Limits::default().max_pixels)]
        max_pixels: u64,
        /// Model variant (default: the manifest's).
        #[arg(long)]
        variant: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The daemon: watch the configured folder, analyze, journal, until SIGTERM/SIGINT.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// What a technician runs first: list capture devices, framebuffers, serial ports,
    /// gpiochips and SPI buses; check the models; with --config, check every device it names.
    /// Exit 1 when anything failed. Stop the service first (a streaming device is busy).
    Doctor {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where device nodes are.
        #[arg(long, default_value = "/dev", hide = true)]
        dev: PathBuf,
        /// Check the models' checksums only, without loading and running them (minutes on
        /// an emulated CPU; the service loads them when it starts).
        #[arg(long)]
        quick: bool,
    },
    /// Verify the models' checksums, load them, print their manifest facts and a timing.
    CheckModels {
        /// Load this variant instead of the manifest's default (e.g. int8-qdq).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Time ONNX files in tract (median of --runs after one warm-up run) on a 1x3x256x256 input;
    /// with --pipeline, time each step of the whole pipeline on radiograph files instead; with
    /// --choose, time every shipped variant and choose the fastest that reproduces the
    /// reference outputs on this CPU.
    Bench {
        /// Timed runs per file.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The files are radiographs: run each through the daemon's steps with the manifest's
        /// models and print each step's median, fastest and slowest time, and peak RSS.
        #[arg(long)]
        pipeline: bool,
        /// Time each variant the manifest ships (all three models, on the reference inputs
        /// shipped with them) and choose the fastest one within the manifest's tolerance of
        /// onnxruntime's outputs: what `[models] variant = "auto"` loads.
        #[arg(long, conflicts_with = "pipeline")]
        choose: bool,
        /// With --choose: the service's config; its manifest and threads are used, and the
        /// choice is cached where the service reads it (beside the journal).
        #[arg(long, requires = "choose")]
        config: Option<PathBuf>,
        /// With --pipeline: the model variant (default: the manifest's).
        #[arg(long, requires = "pipeline")]
        variant: Option<String>,
        /// With --pipeline: where the overlay, mask and journal are written (and removed):
        /// the disk the daemon writes to, since fsync is what costs there.
        #[arg(long, requires = "pipeline")]
        scratch: Option<PathBuf>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Run on this input instead of zeros: raw little-endian f32, 1x3xSIZExSIZE.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The files' input side in pixels (256; the lung-field model reads 128).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Write the first output of the last run here (raw little-endian f32).
        #[arg(long)]
        output: Option<PathBuf>,
        /// ONNX files to time (any variant: int8, int8-qdq, fp32 twins), or radiographs with
        /// --pipeline.
        #[arg(required_unless_present = "choose")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ptxd::logging::init(cli.verbose);
    infer::set_threads(cli.threads);
    // `run`, `doctor --config` and `bench --choose --config` read the config's [models]
    // manifest; a plain `bench` times the files it is given
    let needs_manifest = match &cli.command {
        Command::Analyze { .. } | Command::CheckModels { .. } => true,
        Command::Doctor { config, .. } => config.is_none(),
        Command::Bench {
            pipeline,
            choose,
            config,
            ..
        } => *pipeline || (*choose && config.is_none()),
        Command::Run { .. } => false,
    };
    let manifest = match cli
        .manifest
        .clone()
        .map(Ok)
        .unwrap_or_else(ptxd::manifest::default_manifest)
    {
        Ok(path) => path,
        Err(e) if needs_manifest => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
        Err(_) => PathBuf::new(),
    };
    let result = match cli.command {
        Command::Analyze {
            json,
            mask_dir,
            overlay_dir,
            overlay_size,
            max_pixels,
            variant,
            files,
        } => {
            let outputs = Outputs {
                json,
                mask_dir,
                overlay_dir,
                overlay_size,
            };
            match analyze(&manifest, variant.as_deref(), Limits { max_pixels }, &outputs, &files) {
                Ok(true) => return ExitCode::SUCCESS,
                Ok(false) => return ExitCode::from(2),
                Err(e) => Err(e),
            }
        }
        Command::Run { config } => run(&config),
        Command::Doctor { config, dev, quick } => {
            let config = match config.as_deref().map(Config::load).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let check = if quick {
                ptxd::doctor::ModelCheck::Checksums
            } else {
                ptxd::doctor::ModelCheck::LoadAndRun
            };
            let report = ptxd::doctor::examine(&dev, &manifest, config.as_ref(), check);
            print!("{report}");
            return if report.failures() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::CheckModels { variant } => check_models(&manifest, variant.as_deref()),
        Command::Bench {
            runs,
            choose: true,
            config,
            json,
            ..
        } => bench_choose(&manifest, config.as_deref(), cli.threads, runs, json),
        Command::Bench {
            runs,
            pipeline: true,
            json,
            variant,
            scratch,
            files,
            ..
        } => bench_pipeline(&manifest, variant.as_deref(), &files, runs, json, scratch),
        Command::Bench {
            runs,
            json,
            input,
            size,
            output,
            files,
            ..
        } => bench(&files, runs, json, input.as_deref(), size, output.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn parse_size(s: &str) -> Result<OverlaySize, String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT, e.g. 1280x720")?;
    let w = w.parse().map_err(|_| format!("bad width {w:?}"))?;
    let h = h.parse().map_err(|_| format!("bad height {h:?}"))?;
    OverlaySize::try_from([w, h])
}

struct Outputs {
    json: bool,
    mask_dir: Option<PathBuf>,
    overlay_dir: Option<PathBuf>,
    overlay_size: OverlaySize,
}

/// Analyze every file; Ok(true) when all were analyzed.
fn analyze(
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
        all_ok &= result.is_ok();
        print_result(file, &result, out.json);
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
            let fb = ptxd::screen::result_frame(
                a,
                out.overlay_size,
                &analyzer.versions(),
                &journal::now_rfc3339(),
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
    findings: &'a [ptxd::findings::Finding],
    width: Option<usize>,
    height: Option<usize>,
    format: Option<ptxd::decode::InputFormat>,
    orientation: Option<ptxd::decode::Orientation>,
    input_sha256: Option<&'a str>,
    mask: Option<String>,
    overlay: Option<String>,
    seconds: Option<f64>,
    error_kind: Option<ErrorKind>,
    error: Option<String>,
}

impl<'a> AnalyzeLine<'a> {
    fn new(file: &Path, result: &'a Outcome) -> AnalyzeLine<'a> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let file = file.display().to_string();
        match result {
            Ok((a, (mask, overlay))) => AnalyzeLine {
                v: outcome::VERSION,
                file,
                verdict: a.verdict,
                needs_attention: a.needs_attention(),
                probability: a.probability,
                findings: &a.findings,
                width: Some(a.radiograph.image.width),
                height: Some(a.radiograph.image.height),
                format: Some(a.radiograph.format),
                orientation: Some(a.radiograph.orientation),
                input_sha256: Some(&a.radiograph.sha256),
                mask: path(mask),
                overlay: path(overlay),
                seconds: Some(a.seconds),
                error_kind: a.error_kind(),
                error: a.not_chest.as_ref().map(ToString::to_string),
            },
            Err(failure) => AnalyzeLine {
                v: outcome::VERSION,
                file,
                verdict: Verdict::NotAnalyzed,
                needs_attention: true,
                probability: None,
                findings: &[],
                width: None,
                height: None,
                format: None,
                orientation: None,
                input_sha256: None,
                mask: None,
                overlay: None,
                seconds: None,
                error_kind: Some(failure.kind),
                error: Some(failure.message.clone()),
            },
        }
    }
}

fn print_result(file: &Path, result: &Outcome, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(&AnalyzeLine::new(file, result)).expect("serialises")
        );
        return;
    }
    match result {
        Ok((a, _)) => {
            let (banner, _) = ptxd::render::banner(a.verdict, &a.findings);
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
                Verdict::NotAnalyzed,
                failure.kind
            );
        }
    }
}

fn run(config: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(config)?;
    let stop = daemon::stop_on_signals()?;
    Daemon::start(config)?.run(&stop)?;
    Ok(())
}

/// `bench --choose`: every variant timed and checked here, the choice printed (and cached
/// for the service when its config is given).
fn bench_choose(
    manifest: &Path,
    config: Option<&Path>,
    threads: usize,
    runs: usize,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let (manifest, threads, cache) = match config {
        Some(path) => {
            let c = Config::load(path)?;
            infer::set_threads(c.models.threads.get());
            let cache = c.variant_cache();
            (c.models.manifest, c.models.threads.get(), Some(cache))
        }
        None => (manifest.to_path_buf(), threads, None),
    };
    let key = variant::Key::here(&manifest, threads)?;
    let trials = variant::try_all(&Manifest::load(&manifest)?, runs)?;
    let chosen = variant::fastest(&trials).map(|t| t.variant.clone());
    if json {
        println!(
            "{}",
            serde_json::json!({ "chosen": chosen, "key": key, "trials": trials })
        );
    } else {
        println!("CPU {}, {threads} thread(s); median of {runs} runs a model", key.cpu);
        for t in &trials {
            let models: Vec<String> = t
                .models
                .iter()
                .map(|m| {
                    format!(
                        "{} {:.1} ms (differs {:.4}, tolerance {})",
                        m.role, m.median_ms, m.worst, m.tolerance
                    )
                })
                .collect();
            let verdict = if t.admitted() { "within tolerance" } else { "OUT" };
            println!(
                "{:>9}: {:7.1} ms  {verdict}; {}",
                t.variant,
                t.total_ms(),
                models.join("; ")
            );
        }
    }
    let Some(variant) = chosen else {
        return Err(variant::VariantError::NoneAdmitted(variant::describe(&trials)).into());
    };
    if !json {
        println!("chosen: {variant}");
    }
    if let Some(cache) = cache {
        variant::Choice { variant, key, trials }.save(&cache)?;
        if !json {
            println!("cached in {} for the service's variant = \"auto\"", cache.display());
        }
    }
    Ok(())
}

fn check_models(manifest: &std::path::Path, variant: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::load(manifest)?;
    println!(
        "tract picks its kernels for CPU features {}",
        ptxd::infer::cpu_features()
    );
    for role in Role::ALL {
        let started = Instant::now();
        let model = Model::load(&manifest, role, variant)?;
        let loaded = started.elapsed();
        let entry = manifest.files(role);
        let input = vec![0.0f32; entry.input.shape.iter().product()];
        let started = Instant::now();
        model.run(input)?;
        println!(
            "{role}: {} variant {} ({}), sha256 ok, loaded in {:.2}s, one run {:.2}s; input {} {:?}; output {} = {}",
            model.version(),
            model.variant(),
            model.path().display(),
            loaded.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            entry.input.name,
            entry.input.shape,
            entry.output.name,
            entry.output.meaning,
        );
    }
    Ok(())
}

fn bench_pipeline(
    manifest: &Path,
    variant: Option<&str>,
    files: &[PathBuf],
    runs: usize,
    json: bool,
    scratch: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::load(manifest)?;
    let analyzer = Analyzer::load(&manifest, variant, Limits::default())?;
    let scratch = scratch.unwrap_or_else(std::env::temp_dir);
    let size = OverlaySize {
        width: 1280,
        height: 720,
    };
    let reports = ptxd::bench::pipeline(&analyzer, files, runs, size, &scratch)?;
    let peak = ptxd::bench::peak_rss();
    for report in &reports {
        if json {
            println!("{}", report.to_json());
        } else {
            print!("{report}");
        }
    }
    let mb = peak.map(|b| b as f64 / 1048576.0);
    if json {
        println!(
            "{}",
            serde_json::json!({"peak_rss_mb": mb, "models": analyzer.versions()})
        );
    } else {
        let mb = mb.map_or("unknown".into(), |mb| format!("{mb:.1} MB"));
        println!("peak RSS (all models loaded): {mb}");
    }
    Ok(())
}

fn bench(
    files: &[PathBuf],
    runs: usize,
    json: bool,
    input: Option<&Path>,
    size: usize,
    output: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    use tract_onnx::prelude::{tvec, IntoTValue, Tensor};
    let shape = [1, 3, size, size];
    let data: Vec<f32> = match input {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() != shape.iter().product::<usize>() * 4 {
                return Err(format!(
                    "{}: {} bytes, expected a raw f32 1x3x{size}x{size} tensor (--size)",
                    path.display(),
                    bytes.len()
                )
                .into());
            }
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        None => vec![0.0; shape.iter().product()],
    };
    for file in files {
        let started = Instant::now();
        let plan = infer::load_plan(file, &shape)?;
        let load_s = started.elapsed().as_secs_f64();
        let tensor = Tensor::from_shape(&shape, &data)?;
        plan.run(tvec!(tensor.clone().into_tvalue()))?; // the warm-up
        let (times, last) = Timings::measure(runs, || plan.run(tvec!(tensor.clone().into_tvalue())))?;
        let median = times.median();
        if let Some(path) = output {
            let out = last[0].to_plain_array_view::<f32>()?;
            let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if json {
            println!(
                "{}",
                serde_json::json!({"file": file.display().to_string(), "runs": times.runs(), "median_s": median, "load_s": load_s})
            );
        } else {
            println!(
                "{}: median {:.3}s over {} runs (load {:.2}s)",
                file.display(),
                median,
                times.runs(),
                load_s
            );
        }
    }
    Ok(())
}
