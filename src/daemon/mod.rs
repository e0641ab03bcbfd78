//! The service: radiographs in, results out, in an order that loses nothing.
//!
//! For each file the watch folder (or the capture spool) hands over:
//! 1. if the journal already holds this input (same bytes, same source), it was recorded
//!    before a crash but not moved: move it now (to `done/` or `failed/`), record nothing;
//! 2. turn it into one outcome: an analysis (lung fields, classifier, segmenter when
//!    positive) or a failure (the input could not be read, decoded or analyzed);
//! 3. write the overlay PNG (and the mask when positive) durably: the record names them;
//!    for a DICOM input, its result as DICOM too (`output.dicom_dir`);
//! 4. append the record to the journal and fsync: from here on the result exists;
//! 5. move the input to `done/` (or `failed/` with `<name>.error.txt`);
//! 6. hand the record to the sinks ([`crate::sink`]): the alert lines, the screen, the
//!    serial link. Each may fail on its own without touching the others or the journal.
//!
//! A failure is a result too: journaled with its kind and message, shown as an error screen
//! and reported, so the host learns of it. If the journal itself cannot be written, the
//! input stays in the watch folder (it is picked up again at the next start) and the error
//! is logged.
//!
//! Frames from the capture device arrive the same way, through their own spool folder
//! (`watch.captured`): the folder, not the name, makes their source `capture:<name>`.
//! Between files the loop answers the host (`TRIGGER`, `ACK`), the buttons, and keeps the
//! idle screen and systemd's watchdog current. Only the models and the journal are needed to
//! serve.
//!
//! SIGTERM or SIGINT stops the loop after the file in hand; nothing is left half done.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::analysis::{Analysis, AnalysisError, Analyzer, SetupError};
use crate::base::files::{sha256_file, sha256_hex};
use crate::base::outcome::{ErrorKind, Failure, Origin};
use crate::base::worker::Worker;
use crate::config::Config;
use crate::input::capture::{CaptureService, CaptureState};
use crate::input::receive::Listener;
use crate::input::source::{self, SourceError, WatchFolder};
use crate::model::infer;
use crate::model::manifest::{Manifest, ManifestError};
use crate::model::variant::VariantError;
use crate::pixels::decode;
use crate::record::journal::{Journal, JournalError, Record};
use crate::record::render::StatusView;
use crate::record::result_files;
use crate::sink::alert::{AlertService, Press};
use crate::sink::mqtt::{self, Uplink};
use crate::sink::pacs::Outbox;
use crate::sink::screen::Screen;
use crate::sink::serial::{self, LinkService};
use crate::sink::{self, Delivery, Sink};

mod retention;
mod stall;
mod startup;
mod status;

use stall::{Stalled, Unwritten, STALL_RETRY};
use status::{summary_line, LinkState};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Variant(#[from] VariantError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}: cannot create this folder: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot install the SIGTERM/SIGINT handler: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the serial link thread: {0}")]
    Serial(std::io::Error),
    #[error("PACS outbox: {0}")]
    Pacs(#[source] crate::sink::pacs::PacsError),
    #[error("MQTT uplink: {0}")]
    Mqtt(#[source] crate::sink::mqtt::MqttError),
    #[error("cannot listen for DICOM on {0}: {1}; free the port or change dicom.listen")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("cannot start the capture thread: {0}")]
    Capture(std::io::Error),
    #[error("cannot start the retention thread: {0}")]
    Retention(std::io::Error),
}

/// What a run did, for the final log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub analyzed: usize,
    pub failed: usize,
    pub already_journaled: usize,
}

/// Install SIGTERM and SIGINT handlers that set the returned flag.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(DaemonError::Signals)?;
    }
    Ok(stop)
}

/// The daemon's state: models, journal, folders, and the devices around them.
pub struct Daemon {
    config: Config,
    analyzer: Analyzer,
    journal: Journal,
    /// The host link, when the config has a `[serial]` section (also a sink).
    link: Option<LinkService>,
    link_events: mpsc::Receiver<serial::Event>,
    link_state: LinkState,
    capture: Option<CaptureService>,
    capture_state: CaptureState,
    /// The DICOM listener, writing into the watch folder; stopped when dropped.
    _listener: Option<Listener>,
    /// The PACS outbox, storing the DICOM results from the journal; stopped when dropped.
    _outbox: Option<Outbox>,
    /// The MQTT uplink, publishing the journal and the status; stopped when dropped.
    uplink: Option<Uplink>,
    /// What commands over MQTT ask of the daemon.
    uplink_requests: mpsc::Receiver<mqtt::Request>,
    /// The sweeper of old inputs and results; stopped when dropped.
    _retention: Worker,
    /// The LED and buzzer (a sink), with the buttons' presses.
    alert: Option<AlertService>,
    presses: mpsc::Receiver<Press>,
    /// The attached display (a sink).
    screen: Option<Screen>,
    /// Which sinks are failing, so each failure is logged once.
    sink_health: sink::Health,
    /// An outcome waiting for the disk (see [`Stalled`]); while set, no new input is taken.
    stalled: Option<Stalled>,
    /// For the idle screen: `#12 <time> positive`.
    last_result: Option<String>,
    /// Files waiting in the watch and capture folders.
    queue: usize,
    /// The state last told to the link and systemd.
    last_status: Option<StatusView>,
    /// Next systemd watchdog ping, when the unit has a watchdog.
    watchdog: Option<(Duration, Instant)>,
    summary: Summary,
}

/// The input in hand: where it is, what it is called, where it came from.
struct Input {
    path: PathBuf,
    /// Its file name, for people.
    name: String,
    origin: Origin,
}

impl Input {
    fn source(&self) -> String {
        self.origin.source(&self.name)
    }
}

impl Daemon {
    /// Load and verify the models, open (and repair) the journal, create the output folders.
    /// Any failure here stops start-up with a message saying what to fix.
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        infer::set_threads(config.models.threads.get());
        let manifest = Manifest::load(&config.models.manifest)?;
        let variant = startup::choose_variant(&config, &manifest)?;
        let analyzer = Analyzer::load(&manifest, variant.as_deref(), config.limits())?;
        let journal = Journal::open(&config.journal.path)?.rotate_at(config.journal.segment_bytes());
        startup::create_folders(&config)?;
        let v = analyzer.versions();
        if let Some(p) = &config.profile {
            log::info!("board profile: {} ({})", p.name, p.cpu);
        }
        log::info!(
            "ready: models {} / {}, journal {} (next seq {}), watching {}",
            v.classifier,
            v.segmenter,
            journal.path().display(),
            journal.next_seq(),
            config.watch.dir.display()
        );
        // one read of the journal's tail at start, for the idle screen's and the MQTT
        // status's "last result"
        let last = journal
            .records_from(journal.next_seq().saturating_sub(1).max(1))
            .ok()
            .and_then(|records| records.into_iter().last());
        let startup::Devices {
            link,
            link_events,
            capture,
            listener,
            outbox,
            uplink,
            requests,
            alert,
            presses,
            screen,
            retention,
        } = startup::Devices::start(&config, &analyzer, &journal, last.as_ref())?;
        let last_result = last.as_ref().map(summary_line);
        let mut daemon = Daemon {
            config,
            analyzer,
            journal,
            link,
            link_events,
            link_state: LinkState::Down,
            capture,
            capture_state: CaptureState::Opening,
            _listener: listener,
            _outbox: outbox,
            uplink,
            uplink_requests: requests,
            _retention: retention,
            alert,
            presses,
            screen,
            sink_health: sink::Health::default(),
            stalled: None,
            last_result,
            last_status: None,
            queue: 0,
            watchdog: sd_notify::watchdog_enabled().map(|d| (d / 2, Instant::now())),
            summary: Summary::default(),
        };
        daemon.refresh_status();
        Ok(daemon)
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Serve the watch folder, the capture spool (and the devices) until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Summary, DaemonError> {
        let watch = &self.config.watch;
        let settle = Duration::from_millis(watch.settle_ms);
        let folder = WatchFolder::start(&watch.dir, watch.queue.get(), settle)?;
        let captured = match &self.config.capture {
            Some(_) => Some(WatchFolder::start(self.config.captured_dir(), 1, settle)?),
            None => None,
        };
        // systemd (Type=notify) starts what depends on ptxd once this arrives
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("ready")]);
        while !stop.load(Ordering::Relaxed) {
            if self.stalled.is_some() {
                // new inputs wait in their folders (the queue is bounded) until the disk is back
                std::thread::sleep(Duration::from_millis(50));
                self.retry_stalled();
            } else {
                if let Some(path) = folder.recv_timeout(Duration::from_millis(50)) {
                    self.handle(&path, Origin::Watch);
                }
                if let Some(path) = captured.as_ref().and_then(|c| c.recv_timeout(Duration::ZERO)) {
                    self.handle(&path, Origin::Capture);
                }
            }
            self.serve_events();
            self.queue = folder.pending() + captured.as_ref().map_or(0, WatchFolder::pending);
            self.refresh_status();
            if let Some((period, due)) = &mut self.watchdog {
                if Instant::now() >= *due {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    *due = Instant::now() + *period;
                }
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let s = &self.summary;
        log::info!(
            "stopped: {} analyzed, {} failed, {} already journaled",
            s.analyzed,
            s.failed,
            s.already_journaled
        );
        Ok(self.summary)
    }

    /// Handle one file from the watch folder (or, `Origin::Capture`, the capture spool);
    /// never panics, never returns an error: every outcome is journaled or logged.
    pub fn handle(&mut self, path: &Path, origin: Origin) {
        if !source::takeable(path) {
            return; // taken already (a duplicate event) or removed by the user
        }
        let input = Input {
            path: path.to_path_buf(),
            name: source::name_text(path.file_name().unwrap_or_default()),
            origin,
        };
        let started = Instant::now();
        // Read once: the bytes are hashed here and decoded below. A file too large to read
        // is still hashed (streamed), so its failure record names it too.
        let bytes = decode::read_input(path, self.config.limits());
        let sha = match &bytes {
            Ok(bytes) => Some(sha256_hex(bytes)),
            Err(_) => sha256_file(path).ok(),
        };
        // Recorded before a crash or power cut, but not moved yet: move it, record nothing.
        if let Some(failed) = sha
            .as_deref()
            .and_then(|sha| self.journal.recorded(sha, &input.source()))
        {
            log::info!(
                "{}: already in the journal (recorded before a restart); moving it on",
                input.name
            );
            self.summary.already_journaled += 1;
            let dir = if failed {
                self.config.failed_dir()
            } else {
                self.config.done_dir()
            };
            source::move_out(path, dir, None);
            return;
        }
        // A panic inside a decoder or tract must not take the service down, and must not
        // crash-loop it on the same file after a restart: it becomes this file's failure.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let bytes = bytes.map_err(|e| Failure {
                kind: e.kind(),
                message: e.to_string(),
            })?;
            let sha = sha.clone().expect("hashed above when the file was read");
            self.analyzer
                .analyze_bytes(path, &bytes, sha, started)
                .map_err(AnalysisError::into_failure)
        }))
        .unwrap_or_else(|panic| {
            Err(Failure {
                kind: ErrorKind::Internal,
                message: format!("{}: internal error: {}", path.display(), panic_text(&*panic)),
            })
        });
        if let Err(why) = self.record(&input, sha.clone(), &outcome) {
            self.stall(Stalled {
                input,
                sha,
                outcome,
                why,
                retry_at: Instant::now() + STALL_RETRY,
            });
        }
    }

    /// One outcome, in the order that loses nothing: its files, the journal (from here on
    /// the result exists), the input moved out of the folder, then the sinks.
    /// When a durable step fails (a full disk), nothing is journaled or moved and the caller
    /// stalls.
    fn record(
        &mut self,
        input: &Input,
        sha: Option<String>,
        outcome: &Result<Analysis, Failure>,
    ) -> Result<(), Unwritten> {
        let models = self.analyzer.versions();
        let record = match outcome {
            Ok(analysis) => {
                let mut record = Record::analyzed(input.source(), sha, models, analysis);
                let stem = source::name_text(input.path.file_stem().unwrap_or_default());
                let seq = self.journal.next_seq();
                (record.overlay, record.mask) =
                    result_files::write(&self.config.output, seq, &stem, &input.name, analysis, &record)
                        .map_err(|e| Unwritten::new(&e.path, &e.source))?;
                record
            }
            Err(failure) => Record::failure(input.source(), sha, models, failure),
        };
        let r = self.journal.append(record).map_err(|e| match e {
            JournalError::Io { path, source, .. } => Unwritten::new(&path, &source),
        })?;
        let analysis = outcome.as_ref().ok();
        match (analysis, &r.error) {
            (Some(a), None) => log::info!(
                "#{} {}: {} p={:.3}, {} finding(s), {:.2}s",
                r.seq,
                input.name,
                r.verdict,
                a.probability.unwrap_or(f32::NAN),
                a.findings.len(),
                a.seconds
            ),
            (_, error) => log::warn!(
                "#{} {}: {} ({}): {}",
                r.seq,
                r.source,
                r.verdict,
                r.error_kind.map_or("-", ErrorKind::as_str),
                error.as_deref().unwrap_or_default()
            ),
        }
        if r.failed() {
            self.summary.failed += 1;
            source::move_out(&input.path, self.config.failed_dir(), r.error.as_deref());
        } else {
            self.summary.analyzed += 1;
            source::move_out(&input.path, self.config.done_dir(), None);
        }
        self.last_result = Some(summary_line(&r));
        let delivery = Delivery {
            record: &r,
            analysis,
            input: &input.name,
        };
        let mut sinks: Vec<&mut dyn Sink> = Vec::new();
        sinks.extend(self.alert.as_mut().map(|s| s as &mut dyn Sink));
        sinks.extend(self.screen.as_mut().map(|s| s as &mut dyn Sink));
        sinks.extend(self.link.as_mut().map(|s| s as &mut dyn Sink));
        sink::deliver(&mut sinks, &delivery, &mut self.sink_health);
        Ok(())
    }
}

pub use crate::base::outcome::panic_text;
