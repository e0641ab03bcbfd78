//! The MQTT uplink: every journaled result, and the service's health, published to the
//! clinic's MQTT broker, driven from the journal as the PACS outbox is.
//!
//! Topics, under `ptxd/<device_id>/`:
//! - `result`: each record as the result contract's JSON (the journal line's JSON, `seq`
//!   in it), QoS 1, in journal order. Never images, never DICOM header fields.
//! - `status`: retained, QoS 1: state, models, queue, disk, last result, and how far the
//!   broker has the results. Published on connect, when the state or queue changes, every
//!   `status_s`, and on request. Its last will (and a clean stop) say `"state": "offline"`.
//! - `command`: `REPLAY n`, `TRIGGER`, `STATUS`, as the serial host sends them (when
//!   `commands` is on); each is logged.
//!
//! Decisions:
//! - **The journal is the queue**, as for the PACS: a cursor file (`mqtt.json` beside the
//!   journal) holds the seq through which the broker has acknowledged (PUBACK) every result;
//!   it is written durably as it moves. A restart, a crash or a broker outage resends from
//!   the cursor on, so nothing is lost; a result can arrive twice (sent, the PUBACK lost),
//!   and a subscriber tells by its `seq`.
//! - **A fresh session per connection.** Any error drops the client and its connection;
//!   the next connection (after a backoff of 1 s doubling to `retry_max_ms`) resends from
//!   the cursor, so what was in flight is never half-remembered by the client library.
//! - **At most [`WINDOW`] results unacknowledged**, the backlog read from the journal as the
//!   window opens, not held in memory.
//! - **TLS by default**, plain text only to a broker on loopback (the config refuses it
//!   otherwise); the broker's certificate must chain to `ca_file` (or the system's CAs).

mod connect;
mod session;

pub use connect::check_broker;
pub use session::WINDOW;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use rumqttc::ConnectionError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::base::files::{read_state, write_state, StateError};
use crate::base::outcome::ServiceState;
use crate::base::worker::{Backoff, Worker};
use crate::config::MqttConfig;
use crate::model::infer::ModelVersions;
use crate::record::journal::JournalError;

use connect::Secrets;
use session::Session;

/// Why the broker could not be reached or used, or the uplink's own files not read.
#[derive(Debug, Error)]
pub enum MqttError {
    #[error("{}: unreadable ({source}); fix or remove it to publish every result again", path.display())]
    CursorUnreadable { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("TLS settings: {0}")]
    Tls(#[source] rustls::Error),
    #[error("no CA certificates: ca_file is not set and the system has none usable; set mqtt.ca_file")]
    NoRoots,
    #[error("broker {broker}: {source}")]
    Connection {
        broker: String,
        #[source]
        source: Box<ConnectionError>,
    },
    #[error("broker {0}: the connection closed")]
    Closed(String),
    #[error("broker {0}: no answer within {1:?}")]
    NoAnswer(String, Duration),
    #[error("cannot read the journal: {0}")]
    Journal(#[source] JournalError),
    #[error("cannot start the MQTT uplink: {0}")]
    Thread(#[source] io::Error),
}

/// What the broker acknowledged, kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The seq through which every journaled result was acknowledged (0: none yet).
    pub published_through: u64,
}

impl Cursor {
    /// The cursor at `path`; a missing file is a start from the beginning, an unreadable
    /// one an error (it must not silently resend or skip a whole journal).
    pub fn load(path: &Path) -> Result<Cursor, MqttError> {
        read_state(path).map(Option::unwrap_or_default).map_err(|e| match e {
            StateError::Damaged { path, source } => MqttError::CursorUnreadable { path, source },
            StateError::Io { path, source } => MqttError::File { path, source },
        })
    }

    fn save(&self, path: &Path) -> Result<(), MqttError> {
        write_state(path, self).map_err(|source| MqttError::File {
            path: path.into(),
            source,
        })
    }
}

/// What the daemon is asked to do by a command from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Analyze the current capture frame now.
    Trigger,
}

/// What the uplink needs to know.
#[derive(Debug, Clone)]
pub struct UplinkSetup {
    pub mqtt: MqttConfig,
    pub journal: PathBuf,
    /// `Config::mqtt_cursor`.
    pub cursor: PathBuf,
    pub firmware: String,
    pub models: ModelVersions,
    /// The journal's last record when the uplink starts (seq and time), for the status.
    pub last: Option<(u64, String)>,
}

/// The running uplink; dropping it publishes `offline` (when connected) and stops it.
pub struct Uplink {
    control: Sender<(usize, ServiceState)>,
    _worker: Worker,
}

impl Uplink {
    /// Publish every journal record after the cursor, in order, as they come; commands
    /// that need the daemon arrive on `requests`.
    pub fn start(setup: UplinkSetup, requests: Sender<Request>) -> Result<Uplink, MqttError> {
        let cursor = Cursor::load(&setup.cursor)?;
        let secrets = Secrets::load(&setup.mqtt)?;
        let (control, inbox) = mpsc::channel();
        let worker = Worker::spawn("mqtt", move |stop| {
            let mut state = State {
                cursor,
                queue: 0,
                service: ServiceState::Ready,
                last: setup.last.clone(),
            };
            let mut backoff = Backoff::new(Duration::from_millis(setup.mqtt.retry_max_ms.get()));
            let mut logged: Option<String> = None;
            let broker = setup.mqtt.broker.to_string();
            while !stop.load(Ordering::Relaxed) {
                let mut session = Session::open(&setup, &secrets, &mut state);
                match session.run(&inbox, &requests, stop, &mut backoff) {
                    Ok(()) => {}
                    Err(e) => {
                        let reason = e.to_string();
                        if backoff.failed() | (logged.as_deref() != Some(reason.as_str())) {
                            log::warn!(
                                "MQTT: {reason}; results wait in the journal and are published when {broker} is back"
                            );
                            logged = Some(reason);
                        }
                        backoff.sleep(stop);
                    }
                }
            }
        })
        .map_err(MqttError::Thread)?;
        Ok(Uplink {
            control,
            _worker: worker,
        })
    }

    /// What the status says of the service: images waiting and a one-word state.
    pub fn set_status(&self, queue: usize, state: ServiceState) {
        let _ = self.control.send((queue, state));
    }
}

/// What outlives a connection.
struct State {
    cursor: Cursor,
    queue: usize,
    service: ServiceState,
    last: Option<(u64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cursor_is_the_start_and_a_damaged_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.json");
        assert_eq!(Cursor::load(&path).unwrap().published_through, 0);
        Cursor { published_through: 12 }.save(&path).unwrap();
        assert_eq!(Cursor::load(&path).unwrap().published_through, 12);
        std::fs::write(&path, b"{\"published_thr").unwrap();
        let e = Cursor::load(&path).unwrap_err().to_string();
        assert!(e.contains("mqtt.json") && e.contains("remove it"), "{e}");
    }
}
