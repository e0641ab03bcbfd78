//! `ptxd bench`: model files timed on their own (the figures `benches/onnxruntime_ratio.py`
//! sets beside onnxruntime's), `--pipeline` for a whole radiograph, and `--choose` for
//! which shipped variant this CPU runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ptxd::analysis::Analyzer;
use ptxd::base::timings::Timings;
use ptxd::config::{Config, Limits, OverlaySize};
use ptxd::model::infer;
use ptxd::model::manifest::Manifest;
use ptxd::model::variant;

/// `bench --choose`: every variant timed and checked here, the choice printed (and cached
/// for the service when its config is given).
pub fn bench_choose(
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
    // the choice is made once, here; what follows prints it (and why, when none was admitted)
    let choice = variant::Choice::from_trials(key.clone(), trials.clone());
    let chosen = choice.as_ref().ok().map(|c| c.variant.clone());
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
                    let time = match m.runs_with {
                        Some(with) => format!("in the {with}'s run"),
                        None => format!("{:.1} ms", m.median_ms),
                    };
                    format!("{} {time} (differs {:.4}, tolerance {})", m.role, m.worst, m.tolerance)
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
    let choice = choice?;
    if !json {
        println!("chosen: {}", choice.variant);
    }
    if let Some(cache) = cache {
        choice.save(&cache)?;
        if !json {
            println!("cached in {} for the service's variant = \"auto\"", cache.display());
        }
    }
    Ok(())
}

pub fn bench_pipeline(
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
    let reports = ptxd::tools::bench::pipeline(&analyzer, files, runs, size, &scratch)?;
    let peak = ptxd::tools::bench::peak_rss();
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

pub fn bench(
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
        let plan = infer::load_plan(file, &shape)?.runnable;
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
