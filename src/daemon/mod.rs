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
use crate::base::files::{self, sha256_file, sha256_hex};
use crate::base::outcome::{ErrorKind, ErrorReason, Failure, Origin, ServiceState};
use crate::config::{Config, VariantSetting};
use crate::hw::display;
use crate::input::capture::{CaptureService, CaptureState};
use crate::input::receive::Listener;
use crate::input::source::{self, SourceError, WatchFolder};
use crate::model::infer;
use crate::model::manifest::{Manifest, ManifestError};
use crate::model::variant::{self, Choice, VariantError};
use crate::pixels::decode;
use crate::record::journal::{Journal, JournalError, Record};
use crate::record::render::StatusView;
use crate::record::result_files;
use crate::sink::alert::{AlertService, Press};
use crate::sink::pacs::Outbox;
use crate::sink::screen::Screen;
use crate::sink::serial::{self, LinkService, LinkSetup};
use crate::sink::{self, Delivery, Sink};

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
    #[error("cannot listen for DICOM on {0}: {1}; free the port or change dicom.listen")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("cannot start the capture thread: {0}")]
    Capture(std::io::Error),
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

/// What is known of the serial link: a port can open with no cable in it, so "up" waits
/// for a line from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Down,
    PortOpen,
    HostSeen,
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

/// How often a stalled outcome is tried again.
const STALL_RETRY: Duration = Duration::from_secs(2);

/// An outcome that could not be made durable (the disk is full, the journal cannot be
/// written). It is kept in memory, its input stays in the folder, no new input is taken, and
/// the durable steps are tried again every [`STALL_RETRY`] until they succeed: ptxd resumes by
/// itself when space returns, and after a restart the input is simply analyzed again.
struct Stalled {
    input: Input,
    sha: Option<String>,
    outcome: Result<Analysis, Failure>,
    why: Unwritten,
    retry_at: Instant,
}

/// A durable step failed: what, and whether the disk is full.
#[derive(Debug, Clone)]
struct Unwritten {
    full: bool,
    message: String,
}

impl Unwritten {
    fn new(what: &Path, e: &std::io::Error) -> Unwritten {
        let full = files::is_disk_full(e);
        Unwritten {
            full,
            message: format!("{}: {e}", what.display()),
        }
    }

    fn state(&self) -> ServiceState {
        match self.full {
            true => ServiceState::DiskFull,
            false => ServiceState::StorageError,
        }
    }

    /// The `error` frame's reason, the word of [`Unwritten::state`].
    fn reason(&self) -> ErrorReason {
        match self.full {
            true => ErrorReason::DiskFull,
            false => ErrorReason::StorageError,
        }
    }

    /// For the screen and the host: what is wrong and what to do.
    fn advice(&self) -> String {
        match self.full {
            true => format!(
                "No space left on the disk ({}): free space there; images wait in the watch folder and are analyzed when it returns",
                self.message
            ),
            false => format!(
                "Results cannot be written ({}): check the disk; images wait in the watch folder",
                self.message
            ),
        }
    }
}

/// The variant the config asks for; for "auto", the cached choice or one measured now.
fn choose_variant(config: &Config, manifest: &Manifest) -> Result<Option<String>, DaemonError> {
    match &config.models.variant {
        VariantSetting::ManifestDefault => Ok(None),
        VariantSetting::Pinned(name) => Ok(Some(name.clone())),
        VariantSetting::Fastest => {
            let key = variant::Key::here(&config.models.manifest, config.models.threads.get())?;
            let cache = config.variant_cache();
            if let Some(dir) = cache.parent() {
                std::fs::create_dir_all(dir).map_err(|source| DaemonError::Folder {
                    path: dir.into(),
                    source,
                })?;
            }
            let (choice, how) = match Choice::cached(&cache, &key) {
                Some(choice) => (choice, "cached"),
                None => {
                    log::info!(
                        "variant = \"auto\": timing each model variant on this CPU (once; cached in {})",
                        cache.display()
                    );
                    // untimed on a board: it may take longer than the unit's start timeout allows
                    let _ = sd_notify::notify(&[
                        sd_notify::NotifyState::ExtendTimeoutUsec(VARIANT_TIMEOUT_US),
                        sd_notify::NotifyState::Status("timing the model variants on this CPU (first start)"),
                    ]);
                    let choice = variant::measure(manifest, key, VARIANT_RUNS)?;
                    choice.save(&cache)?;
                    (choice, "measured now")
                }
            };
            log::info!(
                "variant = \"auto\": {} ({how}; {})",
                choice.variant,
                variant::describe(&choice.trials)
            );
            Ok(Some(choice.variant))
        }
    }
}

/// Timed runs a model when "auto" measures at start-up (after the reference runs).
const VARIANT_RUNS: usize = 3;
/// How much longer than its start timeout systemd waits while "auto" measures: 10 minutes.
const VARIANT_TIMEOUT_US: u32 = 600_000_000;

impl Daemon {
    /// Load and verify the models, open (and repair) the journal, create the output folders.
    /// Any failure here stops start-up with a message saying what to fix.
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        infer::set_threads(config.models.threads.get());
        let manifest = Manifest::load(&config.models.manifest)?;
        let variant = choose_variant(&config, &manifest)?;
        let analyzer = Analyzer::load(&manifest, variant.as_deref(), config.limits())?;
        let journal = Journal::open(&config.journal.path)?;
        let mut folders = vec![
            config.watch.dir.clone(),
            config.done_dir().to_path_buf(),
            config.failed_dir().to_path_buf(),
            config.output.overlay_dir.clone(),
        ];
        folders.extend(config.output.mask_dir.clone());
        folders.extend(config.output.dicom_dir.clone());
        if config.capture.is_some() {
            folders.push(config.captured_dir().to_path_buf());
        }
        for path in folders {
            std::fs::create_dir_all(&path).map_err(|source| DaemonError::Folder { path, source })?;
        }
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
        let (events, link_events) = mpsc::channel();
        let link = match &config.serial {
            Some(serial) => Some(
                LinkService::start(
                    LinkSetup {
                        serial: serial.clone(),
                        journal: config.journal.path.clone(),
                        acks: config.acks_file(),
                        firmware: format!("ptxd {}", env!("CARGO_PKG_VERSION")),
                        models: analyzer.versions(),
                    },
                    events,
                )
                .map_err(DaemonError::Serial)?,
            ),
            None => None,
        };
        let capture = match &config.capture {
            Some(c) => Some(
                CaptureService::start(c.clone(), config.captured_dir().to_path_buf(), config.limits())
                    .map_err(DaemonError::Capture)?,
            ),
            None => None,
        };
        let listener = match &config.dicom {
            Some(d) => Some(
                Listener::start(d.clone(), config.watch.dir.clone(), config.limits())
                    .map_err(|e| DaemonError::Listen(d.listen, e))?,
            ),
            None => None,
        };
        let outbox = match (&config.pacs, &config.output.dicom_dir) {
            (Some(pacs), Some(dir)) => Some(
                Outbox::start(
                    pacs.clone(),
                    config.journal.path.clone(),
                    dir.clone(),
                    config.pacs_cursor(),
                )
                .map_err(DaemonError::Pacs)?,
            ),
            _ => None,
        };
        let (press_tx, presses) = mpsc::channel();
        let alert = config.gpio.as_ref().and_then(|g| AlertService::start(g, press_tx));
        let screen = config.display.as_ref().and_then(|d| match display::open(d) {
            Ok(display) => Some(Screen::new(
                display,
                Duration::from_secs(config.output.alert_hold_s.into()),
                // something can acknowledge an alert: the ACK button or the host
                config.serial.is_some() || config.gpio.as_ref().is_some_and(|g| g.ack_button.is_some()),
            )),
            Err(e) => {
                log::error!("{e}; results are still journaled, written as overlays and reported");
                None
            }
        });
        // one read of the journal's tail at start, for the idle screen's "last result"
        let last_result = journal
            .records_from(journal.next_seq().saturating_sub(1).max(1))
            .ok()
            .and_then(|records| records.last().map(summary_line));
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

    /// Start waiting for the disk: say so once (log, host, screen through the status).
    fn stall(&mut self, stalled: Stalled) {
        let why = &stalled.why;
        log::error!(
            "{}: result NOT recorded, the input stays in its folder: {}; retrying every {} s",
            stalled.input.name,
            why.message,
            STALL_RETRY.as_secs()
        );
        if let Some(link) = &self.link {
            link.send_error(why.reason(), &why.advice());
        }
        self.stalled = Some(stalled);
    }

    /// Try the stalled outcome's durable steps again, when due.
    fn retry_stalled(&mut self) {
        let Some(stalled) = self.stalled.as_mut() else { return };
        if Instant::now() < stalled.retry_at {
            return;
        }
        if !source::takeable(&stalled.input.path) {
            log::warn!(
                "{}: removed while waiting for the disk; nothing recorded",
                stalled.input.name
            );
            self.stalled = None;
            return;
        }
        let stalled = self.stalled.take().expect("checked above");
        match self.record(&stalled.input, stalled.sha.clone(), &stalled.outcome) {
            Ok(()) => log::info!("{}: recorded; the disk is writable again, resuming", stalled.input.name),
            Err(why) => {
                self.stalled = Some(Stalled {
                    why,
                    retry_at: Instant::now() + STALL_RETRY,
                    ..stalled
                })
            }
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

    /// Answer what the host and the buttons asked for since the last look.
    fn serve_events(&mut self) {
        while let Ok(event) = self.link_events.try_recv() {
            match event {
                serial::Event::Trigger => self.trigger("host"),
                serial::Event::Acked(seq) => {
                    if let Some(alert) = &self.alert {
                        alert.clear(Some(seq));
                    }
                    if let Some(screen) = &mut self.screen {
                        screen.acknowledged_by_host(seq);
                    }
                }
                serial::Event::Up => self.link_state = LinkState::PortOpen,
                serial::Event::HostSeen => self.link_state = LinkState::HostSeen,
                serial::Event::Down => self.link_state = LinkState::Down,
            }
        }
        while let Ok(press) = self.presses.try_recv() {
            match press {
                Press::Trigger => self.trigger("button"),
                Press::Ack => {
                    log::info!("ACK button: result acknowledged on the device");
                    if let Some(screen) = &mut self.screen {
                        // the next waiting result, or the idle screen, at the next refresh
                        screen.acknowledge_shown(Instant::now());
                    }
                }
            }
        }
        if let Some(capture) = &self.capture {
            let state = capture.state();
            if state != self.capture_state {
                if state == CaptureState::Lost {
                    if let Some(link) = &self.link {
                        let device = self.config.capture.as_ref().map(|c| c.device.display().to_string());
                        link.send_error(
                            ErrorReason::CaptureLost,
                            &format!("{}: device lost, retrying", device.unwrap_or_default()),
                        );
                    }
                }
                self.capture_state = state;
            }
        }
    }

    /// Analyze the current capture frame now (a TRIGGER from the host or the button).
    fn trigger(&self, from: &str) {
        let problem = match (&self.capture, self.capture_state) {
            (Some(capture), CaptureState::Streaming) => {
                log::info!("trigger from the {from}: taking the next frame");
                capture.trigger();
                return;
            }
            (Some(_), _) => "the capture device is not streaming (lost or still opening)",
            (None, _) => "no capture device is configured",
        };
        log::warn!("trigger from the {from} ignored: {problem}");
        if let Some(link) = &self.link {
            link.send_error(ErrorReason::NoCapture, &format!("TRIGGER: {problem}"));
        }
    }

    /// The idle screen's facts now.
    fn status(&self) -> StatusView {
        let capture = match (&self.config.capture, self.capture_state) {
            (None, _) => "not configured".to_string(),
            (Some(c), CaptureState::Streaming) => format!("{} streaming", c.device.display()),
            (Some(c), CaptureState::Opening) => format!("{} opening", c.device.display()),
            (Some(c), CaptureState::Lost) => format!("{} LOST, retrying", c.device.display()),
        };
        let link = match (&self.link, self.link_state) {
            (None, _) => "not configured",
            (Some(_), LinkState::HostSeen) => "up, host seen",
            (Some(_), LinkState::PortOpen) => "port open, no host seen yet",
            (Some(_), LinkState::Down) => "DOWN (results wait in the journal)",
        };
        let v = self.analyzer.versions();
        let state = match (&self.stalled, self.capture_state) {
            (Some(stalled), _) => stalled.why.state(),
            (None, CaptureState::Lost) => ServiceState::CaptureLost,
            (None, _) => ServiceState::Ready,
        };
        StatusView {
            state,
            problem: self.stalled.as_ref().map(|s| s.why.advice()),
            models: format!("{} / {}", v.classifier, v.segmenter),
            queue: self.queue,
            last_result: self.last_result.clone(),
            link: link.into(),
            capture,
        }
    }

    /// Tell the link and systemd the state when it changed; let the screen draw what is due.
    fn refresh_status(&mut self) {
        let view = self.status();
        if self
            .last_status
            .as_ref()
            .is_none_or(|s| (s.state, s.queue) != (view.state, view.queue))
        {
            if let Some(link) = &self.link {
                link.set_status(view.queue, view.state);
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(view.state.banner())]);
        }
        self.last_status = Some(view.clone());
        if let Some(screen) = &mut self.screen {
            screen.refresh(view, Instant::now());
        }
    }
}

/// "#12 2026-11-26T19:03:04Z positive" for the idle screen: the contract's words.
fn summary_line(r: &Record) -> String {
    format!("#{} {} {}", r.seq, r.time, r.verdict)
}

pub use crate::base::outcome::panic_text;
