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
//! Showing (display, alert) and reporting (serial link) come after step 4, never before. A
//! file that cannot be decoded or analyzed is a result too: it is journaled with its error,
//! shown as an error screen and reported, so the host learns of it. If the journal itself
//! cannot be written, the input stays in the watch folder (it is picked up again at the next
//! start) and the error is logged.
//!
//! Frames from the capture device arrive the same way: the capture thread writes each chosen
//! frame into the watch folder as `capture-<device>-<time>.png`. Between files the loop
//! answers the host (`TRIGGER`, `ACK`), the buttons, and keeps the idle screen and systemd's
//! watchdog current. A display, an alert line or a capture device that fails is logged and
//! worked around; only the models and the journal are needed to serve.
//!
//! SIGTERM or SIGINT stops the loop after the file in hand; nothing is left half done.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::alert::{AlertService, Press};
use crate::analysis::{Analysis, AnalysisError, Analyzer, SetupError};
use crate::capture::{CaptureService, CaptureState};
use crate::config::{Config, OverlaySize};
use crate::decode::{self, DecodeError};
use crate::display::{self, Display};
use crate::findings::Verdict;
use crate::infer::{self, ModelVersions};
use crate::journal::{self, Journal, JournalError, Record};
use crate::manifest::{hex, sha256_file, Manifest, ManifestError};
use crate::outcome::{self, ErrorKind, Failure};
use crate::render::{self, Framebuffer, ResultView, StatusView};
use crate::report::{self, LinkService, LinkSetup};
use crate::screen::{Presenter, Shown};
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

/// Draw the result screen for `analysis` into a new framebuffer of `size`.
pub fn render_overlay(
    analysis: &Analysis,
    size: OverlaySize,
    models: &ModelVersions,
    time: &str,
    source: &str,
) -> Framebuffer {
    let mut fb = Framebuffer::new(size.width, size.height);
    let models = models.label();
    let view = ResultView {
        image: &analysis.radiograph.image,
        mask: analysis.mask.as_ref(),
        verdict: analysis.verdict,
        probability: analysis.probability,
        not_chest: analysis.not_chest.as_ref(),
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

/// The attached display, when there is one, and what it shows.
struct Screen {
    display: Box<dyn Display + Send>,
    /// Which result is on screen and which wait ([`crate::screen`]).
    presenter: Presenter<Framebuffer>,
    /// What is drawn now: the idle screen's facts, or a result's seq with its badge.
    drawn: Drawn,
    /// A draw failed and was logged; the next failure is not logged again.
    failing: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Drawn {
    Nothing,
    Idle(StatusView),
    Result { seq: u64, badge: Option<String> },
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
    /// The host link, when the config has a `[serial]` section.
    link: Option<LinkService>,
    link_events: mpsc::Receiver<report::Event>,
    link_state: LinkState,
    capture: Option<CaptureService>,
    capture_state: CaptureState,
    alert: Option<AlertService>,
    presses: mpsc::Receiver<Press>,
    screen: Option<Screen>,
    /// For the idle screen: "#12 <time> POSITIVE".
    last_result: Option<String>,
    /// Files waiting in the watch folder.
    queue: usize,
    /// The state last told to the link and systemd.
    last_status: Option<StatusView>,
    /// Next systemd watchdog ping, when the unit has a watchdog.
    watchdog: Option<(Duration, Instant)>,
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
                CaptureService::start(c.clone(), config.watch.dir.clone(), config.limits())
                    .map_err(DaemonError::Capture)?,
            ),
            None => None,
        };
        let (press_tx, presses) = mpsc::channel();
        let alert = config.gpio.as_ref().and_then(|g| AlertService::start(g, press_tx));
        let screen = config.display.as_ref().and_then(|d| match display::open(d) {
            Ok(display) => Some(Screen {
                display,
                presenter: Presenter::new(
                    Duration::from_secs(config.output.alert_hold_s.into()),
                    // something can acknowledge an alert: the ACK button or the host
                    config.serial.is_some() || config.gpio.as_ref().is_some_and(|g| g.ack_button.is_some()),
                ),
                drawn: Drawn::Nothing,
                failing: false,
            }),
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
            alert,
            presses,
            screen,
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

    /// Serve the watch folder (and the devices) until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Summary, DaemonError> {
        let watch = &self.config.watch;
        let folder = WatchFolder::start(&watch.dir, watch.queue.get(), Duration::from_millis(watch.settle_ms))?;
        // systemd (Type=notify) starts what depends on ptxd once this arrives
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("ready")]);
        while !stop.load(Ordering::Relaxed) {
            if let Some(path) = folder.recv_timeout(Duration::from_millis(50)) {
                self.handle(&path);
            }
            self.serve_events();
            self.queue = folder.pending();
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
        let source = if name.starts_with("capture-") {
            format!("capture:{name}")
        } else {
            format!("watch:{name}")
        };
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
            let bytes = input.map_err(|e| Failure {
                kind: e.kind(),
                message: e.to_string(),
            })?;
            let sha = sha.clone().expect("hashed above when the file was read");
            self.analyze(path, &bytes, sha, started)
        }))
        .unwrap_or_else(|panic| {
            Err(Failure {
                kind: ErrorKind::Internal,
                message: format!("{}: internal error: {}", path.display(), panic_text(&panic)),
            })
        });
        match outcome {
            Ok(analysis) => self.record_analysis(path, &name, &source, &analysis),
            Err(failure) => self.record_failure(path, &source, sha, &failure),
        }
    }

    /// Decode and analyze one file's bytes; the error names the file.
    fn analyze(&self, path: &Path, bytes: &[u8], sha256: String, started: Instant) -> Result<Analysis, Failure> {
        let radiograph = decode::decode_hashed(bytes, sha256, self.config.limits()).map_err(|why| {
            AnalysisError::from(DecodeError {
                file: path.to_path_buf(),
                why,
            })
            .into_failure()
        })?;
        self.analyzer.analyze(radiograph, started).map_err(|e| {
            AnalysisError::Infer {
                file: path.display().to_string(),
                source: Box::new(e),
            }
            .into_failure()
        })
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
            v: outcome::VERSION,
            verdict: analysis.verdict,
            needs_attention: analysis.needs_attention(),
            probability: analysis.probability,
            findings: analysis.findings.clone(),
            models: versions.clone(),
            overlay,
            mask,
            error_kind: analysis.error_kind(),
            error: analysis.not_chest.as_ref().map(ToString::to_string),
        };
        match self.journal.append(record) {
            Ok(r) => {
                match (&analysis.not_chest, analysis.probability) {
                    (Some(why), _) => log::warn!("#{} {name}: {}: {why}", r.seq, r.verdict),
                    (None, p) => log::info!(
                        "#{} {name}: {} p={:.3}, {} finding(s), {:.2}s",
                        r.seq,
                        r.verdict,
                        p.unwrap_or(f32::NAN),
                        analysis.findings.len(),
                        analysis.seconds
                    ),
                }
                self.summary.analyzed += 1;
                self.move_input(path, self.config.done_dir(), None);
                if analysis.verdict == Verdict::Positive {
                    if let Some(alert) = &self.alert {
                        alert.raise(r.seq);
                    }
                }
                self.last_result = Some(summary_line(&r));
                let alert = matches!(r.verdict, Verdict::Positive | Verdict::Indeterminate);
                self.show(r.seq, alert, |size| {
                    render_overlay(analysis, size, &versions, &r.time, name)
                });
                self.report(r);
            }
            Err(e) => log::error!("{name}: analyzed but NOT recorded, left in the watch folder: {e}"),
        }
    }

    fn record_failure(&mut self, path: &Path, source: &str, sha: Option<String>, failure: &Failure) {
        let error = failure.message.as_str();
        let record = Record {
            v: outcome::VERSION,
            seq: 0,
            time: journal::now_rfc3339(),
            source: source.to_string(),
            input_sha256: sha,
            verdict: Verdict::NotAnalyzed,
            needs_attention: true,
            probability: None,
            findings: Vec::new(),
            models: self.analyzer.versions(),
            overlay: None,
            mask: None,
            error_kind: Some(failure.kind),
            error: Some(error.to_string()),
        };
        match self.journal.append(record) {
            Ok(r) => {
                log::warn!("#{} {}: {} ({}): {error}", r.seq, r.source, r.verdict, failure.kind);
                self.summary.failed += 1;
                self.move_input(path, self.config.failed_dir(), Some(error));
                self.last_result = Some(summary_line(&r));
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                self.show(r.seq, false, |size| {
                    let mut fb = Framebuffer::new(size.width, size.height);
                    let lines = vec![
                        format!("#{} {}", r.seq, name),
                        error.to_string(),
                        "Check the digitizer's output, then send the image again.".into(),
                        "Press ACK to clear.".into(),
                    ];
                    let Ok(()) = render::draw_error(&mut fb, "IMAGE NOT ANALYZED", &lines);
                    fb
                });
                self.report(r);
            }
            Err(e) => log::error!(
                "{}: failure NOT recorded, left in the watch folder: {e}",
                path.display()
            ),
        }
    }

    /// Answer what the host and the buttons asked for since the last look.
    fn serve_events(&mut self) {
        while let Ok(event) = self.link_events.try_recv() {
            match event {
                report::Event::Trigger => self.trigger("host"),
                report::Event::Acked(seq) => {
                    if let Some(alert) = &self.alert {
                        alert.clear(Some(seq));
                    }
                    if let Some(screen) = &mut self.screen {
                        screen.presenter.acknowledged_by_host(seq);
                    }
                }
                report::Event::Up => self.link_state = LinkState::PortOpen,
                report::Event::HostSeen => self.link_state = LinkState::HostSeen,
                report::Event::Down => self.link_state = LinkState::Down,
            }
        }
        while let Ok(press) = self.presses.try_recv() {
            match press {
                Press::Trigger => self.trigger("button"),
                Press::Ack => {
                    log::info!("ACK button: result acknowledged on the device");
                    if let Some(screen) = &mut self.screen {
                        // the next waiting result, or the idle screen, at the next refresh
                        screen.presenter.acknowledge_shown(Instant::now());
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
                            "capture-lost",
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
            link.send_error("no-capture", &format!("TRIGGER: {problem}"));
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
        StatusView {
            state: if self.capture_state == CaptureState::Lost {
                "CAPTURE LOST".into()
            } else {
                "READY".into()
            },
            models: format!("{} / {}", v.classifier, v.segmenter),
            queue: self.queue,
            last_result: self.last_result.clone(),
            link: link.into(),
            capture,
        }
    }

    /// Redraw the idle screen when it shows and its facts changed; tell the link and systemd
    /// the state.
    fn refresh_status(&mut self) {
        let view = self.status();
        if self
            .last_status
            .as_ref()
            .is_none_or(|s| (&s.state, s.queue) != (&view.state, view.queue))
        {
            if let Some(link) = &self.link {
                link.set_status(view.queue, &view.state.to_lowercase().replace(' ', "-"));
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&view.state)]);
        }
        self.last_status = Some(view.clone());
        let Some(screen) = &mut self.screen else { return };
        screen.presenter.tick(Instant::now());
        Self::redraw(screen, view);
    }

    /// Draw what the presenter says is due, if it is not what the screen shows already: the
    /// current result with its badge, or the idle screen.
    fn redraw(screen: &mut Screen, view: StatusView) {
        let due = match screen.presenter.current() {
            Some(shown) => Drawn::Result {
                seq: shown.seq,
                badge: screen.presenter.badge(),
            },
            None => Drawn::Idle(view),
        };
        if due == screen.drawn {
            return;
        }
        let fb = match (&due, screen.presenter.current()) {
            (Drawn::Result { badge, .. }, Some(shown)) => {
                let mut fb = shown.frame.clone();
                if let Some(text) = badge {
                    let Ok(()) = render::draw_badge(&mut fb, text);
                }
                fb
            }
            (Drawn::Idle(view), _) => {
                let size = screen.display.size();
                let mut fb = Framebuffer::new(size.width, size.height);
                let Ok(()) = render::draw_status(&mut fb, view);
                fb
            }
            _ => return,
        };
        Self::present(screen, &fb);
        screen.drawn = due;
    }

    /// A result's screen drawn by `draw` at the display's size. An alert (positive,
    /// indeterminate) holds the screen ([`crate::screen`]); others wait while one does.
    fn show(&mut self, seq: u64, alert: bool, draw: impl FnOnce(OverlaySize) -> Framebuffer) {
        let view = self.status();
        let Some(screen) = &mut self.screen else { return };
        let size = screen.display.size();
        let frame = draw(OverlaySize {
            width: size.width,
            height: size.height,
        });
        screen.presenter.arrive(Shown { seq, alert, frame }, Instant::now());
        Self::redraw(screen, view);
    }

    fn present(screen: &mut Screen, fb: &Framebuffer) {
        match screen.display.show(fb) {
            Ok(()) => screen.failing = false,
            Err(e) if !screen.failing => {
                log::error!("{e}; results are still journaled and reported");
                screen.failing = true;
            }
            Err(_) => {}
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

/// "#12 2026-11-26T19:03:04Z positive" for the idle screen: the contract's words.
fn summary_line(r: &Record) -> String {
    format!("#{} {} {}", r.seq, r.time, r.verdict)
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
