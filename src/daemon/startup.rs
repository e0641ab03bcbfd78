//! Start-up: which model variant to load, the folders to create, and the devices and
//! threads around the pipeline.

use std::sync::mpsc;
use std::time::Duration;

use crate::analysis::Analyzer;
use crate::base::worker::Worker;
use crate::config::{Config, VariantSetting};
use crate::hw::display;
use crate::input::capture::CaptureService;
use crate::input::receive::Listener;
use crate::model::manifest::Manifest;
use crate::model::variant::{self, Choice};
use crate::record::journal::{Journal, Record};
use crate::sink::alert::{AlertService, Press};
use crate::sink::mqtt::{self, Uplink, UplinkSetup};
use crate::sink::pacs::Outbox;
use crate::sink::screen::Screen;
use crate::sink::serial::{self, LinkService, LinkSetup};

use super::DaemonError;

/// The variant the config asks for; for "auto", the cached choice or one measured now.
pub(super) fn choose_variant(config: &Config, manifest: &Manifest) -> Result<Option<String>, DaemonError> {
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

/// Every folder the service writes into, created when missing: a fresh SD card needs none
/// made by hand.
pub(super) fn create_folders(config: &Config) -> Result<(), DaemonError> {
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
    Ok(())
}

/// The threads and devices around the pipeline, each started only when its section is in
/// the config. A display that cannot be opened is logged and left out (results are still
/// journaled and reported); the others stop start-up with what to fix.
pub(super) struct Devices {
    pub(super) link: Option<LinkService>,
    pub(super) link_events: mpsc::Receiver<serial::Event>,
    pub(super) capture: Option<CaptureService>,
    pub(super) listener: Option<Listener>,
    pub(super) outbox: Option<Outbox>,
    pub(super) uplink: Option<Uplink>,
    pub(super) requests: mpsc::Receiver<mqtt::Request>,
    pub(super) alert: Option<AlertService>,
    pub(super) presses: mpsc::Receiver<Press>,
    pub(super) screen: Option<Screen>,
    /// The sweeper of old inputs and results (`[retention]`); stopped when dropped.
    pub(super) retention: Worker,
}

impl Devices {
    /// `last` is the journal's last record, if any (for the MQTT status's "last result").
    pub(super) fn start(
        config: &Config,
        analyzer: &Analyzer,
        journal: &Journal,
        last: Option<&Record>,
    ) -> Result<Devices, DaemonError> {
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
                        last_seq: journal.next_seq().saturating_sub(1),
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
        let (request_tx, requests) = mpsc::channel();
        let uplink = match &config.mqtt {
            Some(m) => {
                let setup = UplinkSetup {
                    mqtt: m.clone(),
                    journal: config.journal.path.clone(),
                    cursor: config.mqtt_cursor(),
                    firmware: format!("ptxd {}", env!("CARGO_PKG_VERSION")),
                    models: analyzer.versions(),
                    last: last.map(|r| (r.seq, r.time.clone())),
                };
                Some(Uplink::start(setup, request_tx).map_err(DaemonError::Mqtt)?)
            }
            None => None,
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
        let retention = super::retention::start(config).map_err(DaemonError::Retention)?;
        Ok(Devices {
            retention,
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
        })
    }
}
