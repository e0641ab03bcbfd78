//! The `ptxd` command line: a thin layer over the library, its subcommands in [`cli`].

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ptxd::config::{Config, Limits, OverlaySize};
use ptxd::daemon::{self, Daemon};
use ptxd::model::infer;

use cli::analyze::{analyze, Outputs};
use cli::bench::{bench, bench_choose, bench_pipeline};
use cli::check_models::check_models;

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
    ptxd::base::logging::init(cli.verbose);
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
        .unwrap_or_else(ptxd::model::manifest::default_manifest)
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
                ptxd::tools::doctor::ModelCheck::Checksums
            } else {
                ptxd::tools::doctor::ModelCheck::LoadAndRun
            };
            let report = ptxd::tools::doctor::examine(&dev, &manifest, config.as_ref(), check);
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

fn run(config: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(config)?;
    let stop = daemon::stop_on_signals()?;
    Daemon::start(config)?.run(&stop)?;
    Ok(())
}
