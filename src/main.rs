//! The `ptxd` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ptxd::infer::{self, Model};
use ptxd::manifest::{Manifest, ROLES};

#[derive(Parser)]
#[command(
    name = "ptxd",
    version,
    about = "Pneumothorax triage beside a portable X-ray digitizer (not a diagnosis)"
)]
struct Cli {
    /// The model manifest; model files are read from its folder.
    #[arg(long, global = true, default_value = "models/manifest.toml")]
    manifest: PathBuf,
    /// Inference threads.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the models' checksums, load them, print their manifest facts and a timing.
    CheckModels {
        /// Load this variant instead of the manifest's default (e.g. int8-qdq).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Time ONNX files in tract (median of --runs after one warm-up run) on a 1x3x256x256 input.
    Bench {
        /// Timed runs per file.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Run on this input instead of zeros: raw little-endian f32, 1x3x256x256.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Write the first output of the last run here (raw little-endian f32).
        #[arg(long)]
        output: Option<PathBuf>,
        /// ONNX files to time (any variant: int8, int8-qdq, fp32 twins).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    infer::set_threads(cli.threads);
    let result = match cli.command {
        Command::CheckModels { variant } => check_models(&cli.manifest, variant.as_deref()),
        Command::Bench {
            runs,
            json,
            input,
            output,
            files,
        } => bench(&files, runs, json, input.as_deref(), output.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptxd: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_models(manifest: &std::path::Path, variant: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::load(manifest)?;
    for role in ROLES {
        let started = Instant::now();
        let model = Model::load(&manifest, role, variant)?;
        let loaded = started.elapsed();
        let entry = manifest.entry(role).expect("both roles are in every manifest");
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

fn bench(
    files: &[PathBuf],
    runs: usize,
    json: bool,
    input: Option<&Path>,
    output: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    use tract_onnx::prelude::{tvec, IntoTValue, Tensor};
    const SHAPE: [usize; 4] = [1, 3, 256, 256];
    let data: Vec<f32> = match input {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() != SHAPE.iter().product::<usize>() * 4 {
                return Err(format!(
                    "{}: {} bytes, expected a raw f32 1x3x256x256 tensor",
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
        None => vec![0.0; SHAPE.iter().product()],
    };
    for file in files {
        let started = Instant::now();
        let plan = infer::load_plan(file, &SHAPE)?;
        let load_s = started.elapsed().as_secs_f64();
        let tensor = Tensor::from_shape(&SHAPE, &data)?;
        let mut last = plan.run(tvec!(tensor.clone().into_tvalue()))?;
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            last = plan.run(tvec!(tensor.clone().into_tvalue()))?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if let Some(path) = output {
            let out = last[0].to_plain_array_view::<f32>()?;
            let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if json {
            println!(
                "{}",
                serde_json::json!({"file": file.display().to_string(), "runs": times.len(), "median_s": median, "load_s": load_s})
            );
        } else {
            println!(
                "{}: median {:.3}s over {} runs (load {:.2}s)",
                file.display(),
                median,
                times.len(),
                load_s
            );
        }
    }
    Ok(())
}
