//! The service: radiographs in, results out, in an order that loses nothing.
//!
//! For each file the watch folder hands over:
//! 1. if the journal already holds this input (same bytes, same name), it was recorded
//!    before a crash but not moved: move it now (to `done/` or `failed/`), record nothing;
//! 2. decode and analyze (classifier; segmenter when positive);
//! 3. write the overlay PNG (and the mask when positive) durably;
//! 4. append the record to the journal and fsync: from here on the result exists;
//! 5. move the input to `done/` (or `failed/` with `<name>.error.txt`).
//!
//! Reporting to the host (the serial link, when configured) comes after step 4, never
//! before; showing on a display comes with the device issue. A file that
//! cannot be decoded or analyzed is a result too: it is journaled with its error, so the
//! host learns of it. If the journal itself cannot be written, the input stays in the watch
//! folder (it is picked up again at the next start) and the error is logged.
//!
//! SIGTERM or SIGINT stops the loop after the file in hand; nothing is left half done.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::analysis::{Analysis, Analyzer, SetupError};
use crate::config::{Config, OverlaySize};
use crate::decode::{self, DecodeError};
use crate::infer::{self, ModelVersions};
use crate::journal::{self, Journal, JournalError, Record};
use crate::manifest::{hex, sha256_file, Manifest, ManifestError};
use crate::render::{self, Framebuffer, ResultView};
use crate::report::{LinkService, LinkSetup};
use crate::source::{SourceError, WatchFolder};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}: cannot create this folder: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot install the SIGTERM/SIGINT handler: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the serial link thread: {0}")]
    Serial(std::io::Error),
}

/// What a run did, for the final log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub analyzed: usize,
    pub failed: usize,
    pub already_journaled: usize,
}

/// Draw the result screen for `analysis` into a new framebuffer of `size`.
pub fn render_overlay(
    analysis: &Analysis,
    size: OverlaySize,
    models: &ModelVersions,
    time: &str,
    source: &str,
) -> Framebuffer {
    let mut fb = Framebuffer::new(size.width, size.height);
    let models = format!("{} / {}", models.classifier, models.segmenter);
    let view = ResultView {
        image: &analysis.radiograph.image,
        mask: analysis.mask.as_ref(),
        verdict: analysis.verdict,
        probability: analysis.probability,
        findings: &analysis.findings,
        time,
        models: &models,
        source,
    };
    let Ok(()) = render::draw_result(&mut fb, &view);
    fb
}

/// Install SIGTERM and SIGINT handlers that set the returned flag.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(DaemonError::Signals)?;
    }
    Ok(stop)
}

/// The daemon's state: models, journal, folders.
pub struct Daemon {
    config: Config,
    analyzer: Analyzer,
    journal: Journal,
    /// The host link, when the config has a `[serial]` section.
    link: Option<LinkService>,
    summary: Summary,
}

impl Daemon {
    /// Load and verify the models, open (and repair) the journal, create the output folders.
    /// Any failure here stops start-up with a message saying what to fix.
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        infer::set_threads(config.models.threads.get());
        let manifest = Manifest::load(&config.models.manifest)?;
        let analyzer = Analyzer::load(&manifest, config.models.variant.as_deref(), config.limits())?;
        let journal = Journal::open(&config.journal.path)?;
        let mut folders = vec![
            config.watch.dir.clone(),
            config.done_dir().to_path_buf(),
            config.failed_dir().to_path_buf(),
            config.output.overlay_dir.clone(),
        ];
        folders.extend(config.output.mask_dir.clone());
        for path in folders {
            std::fs::create_dir_all(&path).map_err(|source| DaemonError::Folder { path, source })?;
        }
        let v = analyzer.versions();
        log::info!(
            "ready: models {} / {}, journal {} (next seq {}), watching {}",
            v.classifier,
            v.segmenter,
            journal.path().display(),
            journal.next_seq(),
            config.watch.dir.display()
        );
        let link = match &config.serial {
            Some(serial) => Some(
                LinkService::start(LinkSetup {
                    serial: serial.clone(),
                    journal: config.journal.path.clone(),
                    firmware: format!("ptxd {}", env!("CARGO_PKG_VERSION")),
                    models: analyzer.versions(),
                })
                .map_err(DaemonError::Serial)?,
            ),
            None => None,
        };
        Ok(Daemon {
            config,
            analyzer,
            journal,
            link,
            summary: Summary::default(),
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Serve the watch folder until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Summary, DaemonError> {
        let watch = &self.config.watch;
        let folder = WatchFolder::start(&watch.dir, watch.queue.get(), Duration::from_millis(watch.settle_ms))?;
        while !stop.load(Ordering::Relaxed) {
            if let Some(path) = folder.recv_timeout(Duration::from_millis(100)) {
                self.handle(&path);
            }
        }
        let s = &self.summary;
        log::info!(
            "stopped: {} analyzed, {} failed, {} already journaled",
            s.analyzed,
            s.failed,
            s.already_journaled
        );
        Ok(self.summary)
    }

    /// Handle one file from the watch folder; never panics, never returns an error: every
    /// outcome is journaled or logged.
    pub fn handle(&mut self, path: &Path) {
        if !path.is_file() {
            return; // taken already (a duplicate event) or removed by the user
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = format!("watch:{name}");
        let started = Instant::now();
        // Read once: the bytes are hashed here and decoded below. A file too large to read
        // is still hashed (streamed), so its failure record names it too.
        let input = decode::read_input(path, self.config.limits());
        let sha = match &input {
            Ok(bytes) => Some(hex(&Sha256::digest(bytes))),
            Err(_) => sha256_file(path).ok(),
        };
        // Recorded before a crash or power cut, but not moved yet: move it, record nothing.
        if let Some(failed) = sha.as_deref().and_then(|sha| self.journal.recorded(sha, &source)) {
            log::info!("{name}: already in the journal (recorded before a restart); moving it on");
            self.summary.already_journaled += 1;
            let dir = if failed {
                self.config.failed_dir()
            } else {
                self.config.done_dir()
            };
            self.move_input(path, dir, None);
            return;
        }
        // A panic inside a decoder or tract must not take the service down, and must not
        // crash-loop it on the same file after a restart: it becomes this file's failure.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let bytes = input.map_err(|e| e.to_string())?;
            let sha = sha.clone().expect("hashed above when the file was read");
            self.analyze(path, &bytes, sha, started)
        }))
        .unwrap_or_else(|panic| Err(format!("{}: internal error: {}", path.display(), panic_text(&panic))));
        match outcome {
            Ok(analysis) => self.record_analysis(path, &name, &source, &analysis),
            Err(error) => self.record_failure(path, &source, sha, &error),
        }
    }

    /// Decode and analyze one file's bytes; the error names the file.
    fn analyze(&self, path: &Path, bytes: &[u8], sha256: String, started: Instant) -> Result<Analysis, String> {
        let radiograph = decode::decode_hashed(bytes, sha256, self.config.limits()).map_err(|reason| {
            DecodeError {
                file: path.to_path_buf(),
                reason,
            }
            .to_string()
        })?;
        self.analyzer
            .analyze(radiograph, started)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn record_analysis(&mut self, path: &Path, name: &str, source: &str, analysis: &Analysis) {
        let seq = self.journal.next_seq();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let time = journal::now_rfc3339();
        let versions = self.analyzer.versions();
        let overlay_path = self.config.output.overlay_dir.join(format!("{seq:08}-{stem}.png"));
        let fb = render_overlay(analysis, self.config.output.overlay_size, &versions, &time, name);
        let overlay = match journal::write_durably(&overlay_path, &fb.to_png()) {
            Ok(()) => Some(overlay_path.display().to_string()),
            Err(e) => {
                log::error!("{}: cannot write the overlay: {e}", overlay_path.display());
                None
            }
        };
        let mask = match (&analysis.mask, &self.config.output.mask_dir) {
            (Some(mask), Some(dir)) => {
                let p = dir.join(format!("{seq:08}-{stem}.png"));
                match journal::write_durably(&p, &mask.to_png()) {
                    Ok(()) => Some(p.display().to_string()),
                    Err(e) => {
                        log::error!("{}: cannot write the mask: {e}", p.display());
                        None
                    }
                }
            }
            _ => None,
        };
        let record = Record {
            seq,
            time,
            source: source.to_string(),
            input_sha256: Some(analysis.radiograph.sha256.clone()),
            verdict: Some(analysis.verdict),
            pneumothorax: analysis.pneumothorax(),
            probability: Some(analysis.probability),
            findings: analysis.findings.clone(),
            models: versions,
            overlay,
            mask,
            error: None,
        };
        match self.journal.append(record) {
            Ok(r) => {
                log::info!(
                    "#{} {name}: {:?} p={:.3}, {} finding(s), {:.2}s",
                    r.seq,
                    analysis.verdict,
                    analysis.probability,
                    analysis.findings.len(),
                    analysis.seconds
                );
                self.summary.analyzed += 1;
                self.move_input(path, self.config.done_dir(), None);
                self.report(r);
            }
            Err(e) => log::error!("{name}: analyzed but NOT recorded, left in the watch folder: {e}"),
        }
    }

    fn record_failure(&mut self, path: &Path, source: &str, sha: Option<String>, error: &str) {
        log::warn!("{error}");
        let record = Record {
            seq: 0,
            time: journal::now_rfc3339(),
            source: source.to_string(),
            input_sha256: sha,
            verdict: None,
            pneumothorax: false,
            probability: None,
            findings: Vec::new(),
            models: self.analyzer.versions(),
            overlay: None,
            mask: None,
            error: Some(error.to_string()),
        };
        match self.journal.append(record) {
            Ok(r) => {
                self.summary.failed += 1;
                self.move_input(path, self.config.failed_dir(), Some(error));
                self.report(r);
            }
            Err(e) => log::error!(
                "{}: failure NOT recorded, left in the watch folder: {e}",
                path.display()
            ),
        }
    }

    /// Hand a journaled record to the host link, if there is one.
    fn report(&self, record: Record) {
        if let Some(link) = &self.link {
            link.send(record);
        }
    }

    /// Move the input into `dir` (`name.2.png`, `name.3.png`... on a name clash), and the error text
    /// beside it for a failure.
    fn move_input(&self, path: &Path, dir: &Path, error: Option<&str>) {
        let name = path.file_name().unwrap_or_default();
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let mut target = dir.join(name);
        let mut n = 2;
        while target.exists() {
            target = dir.join(format!("{stem}.{n}{ext}"));
            n += 1;
        }
        if let Some(error) = error {
            let txt = PathBuf::from(format!("{}.error.txt", target.display()));
            if let Err(e) = journal::write_durably(&txt, format!("{error}\n").as_bytes()) {
                log::error!("{}: {e}", txt.display());
            }
        }
        if let Err(e) = std::fs::rename(path, &target) {
            log::error!("{}: cannot move it to {}: {e}", path.display(), dir.display());
        }
    }
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
