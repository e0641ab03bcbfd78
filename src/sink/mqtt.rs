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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS, RecvTimeoutError, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::base::files::{now_rfc3339, write_durably};
use crate::base::outcome::ServiceState;
use crate::base::worker::{Backoff, Worker};
use crate::config::MqttConfig;
use crate::model::infer::ModelVersions;
use crate::record::journal::{JournalError, Position, Record, Records};
use crate::record::retention::disk_space;
use crate::sink::serial::{parse_command, Command};

/// Results published and not yet acknowledged by the broker, at most.
pub const WINDOW: usize = 16;

/// The largest packet either way: a record is a few hundred bytes, a command a line.
const MAX_PACKET: usize = 64 * 1024;

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
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| MqttError::CursorUnreadable {
                path: path.into(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(source) => Err(MqttError::File {
                path: path.into(),
                source,
            }),
        }
    }

    fn save(&self, path: &Path) -> Result<(), MqttError> {
        let text = serde_json::to_string(self).expect("a cursor serializes");
        write_durably(path, text.as_bytes()).map_err(|source| MqttError::File {
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

/// The retained status (and, with `online: false`, the last will).
#[derive(Debug, Serialize)]
struct Status<'a> {
    v: u32,
    device: &'a str,
    /// The service's state word (`ready`, `disk-full`, ...), or `offline`.
    state: &'a str,
    online: bool,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    firmware: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a ModelVersions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_free_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_result_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_through: Option<u64>,
}

impl<'a> Status<'a> {
    fn offline(device: &'a str) -> Status<'a> {
        Status {
            v: crate::base::outcome::VERSION,
            device,
            state: "offline",
            online: false,
            time: now_rfc3339(),
            firmware: None,
            models: None,
            queue: None,
            disk_free_bytes: None,
            disk_total_bytes: None,
            last_seq: None,
            last_result_time: None,
            published_through: None,
        }
    }
}

/// What was handed to the client, in order, until it says which packet id each got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Result(u64),
    Other,
}

/// The results in flight and the cursor they move. Results are published in journal order,
/// so every result at or below the cursor is acknowledged once the lowest one in flight is
/// above it; seqs the journal lacks (a corrupt line) are never in flight and never wait.
#[derive(Debug, Default)]
struct Flight {
    through: u64,
    /// Published, packet id not known yet (the client numbers them in order).
    unnumbered: VecDeque<Sent>,
    numbered: HashMap<u16, Sent>,
    /// Result seqs above `through` published and not acknowledged.
    open: BTreeSet<u64>,
    /// The highest seq acknowledged above `through`.
    acked_to: u64,
}

impl Flight {
    fn new(through: u64) -> Flight {
        Flight {
            through,
            acked_to: through,
            ..Flight::default()
        }
    }

    fn room(&self) -> usize {
        WINDOW.saturating_sub(self.unnumbered.len() + self.numbered.len())
    }

    fn published(&mut self, sent: Sent) {
        if let Sent::Result(seq) = sent {
            if seq > self.through {
                self.open.insert(seq);
            }
        }
        self.unnumbered.push_back(sent);
    }

    fn numbered(&mut self, pkid: u16) {
        if let Some(sent) = self.unnumbered.pop_front() {
            self.numbered.insert(pkid, sent);
        }
    }

    /// The broker acknowledged packet `pkid`; the new cursor when it moved.
    fn acked(&mut self, pkid: u16) -> Option<u64> {
        if let Some(Sent::Result(seq)) = self.numbered.remove(&pkid) {
            if self.open.remove(&seq) {
                self.acked_to = self.acked_to.max(seq);
            }
        }
        let through = match self.open.first() {
            Some(&lowest) => self.acked_to.min(lowest - 1),
            None => self.acked_to,
        };
        (through > self.through).then(|| {
            self.through = through;
            through
        })
    }
}

/// One connection to the broker, from connect to the first error (or the stop).
struct Session<'a> {
    setup: &'a UplinkSetup,
    state: &'a mut State,
    client: Client,
    connection: rumqttc::Connection,
    flight: Flight,
    /// Where the next journal read starts, and the seq it wants.
    offset: Position,
    next: u64,
    connected: bool,
    status_due: Option<Instant>,
    /// When the journal was last read and had nothing new.
    idle_since: Option<Instant>,
}

impl<'a> Session<'a> {
    fn open(setup: &'a UplinkSetup, secrets: &Secrets, state: &'a mut State) -> Session<'a> {
        let (client, connection) = Client::new(options(&setup.mqtt, secrets), 2 * WINDOW);
        let through = state.cursor.published_through;
        Session {
            setup,
            state,
            client,
            connection,
            flight: Flight::new(through),
            offset: Position::default(),
            next: through + 1,
            connected: false,
            status_due: None,
            idle_since: None,
        }
    }

    fn broker(&self) -> String {
        self.setup.mqtt.broker.to_string()
    }

    fn run(
        &mut self,
        control: &Receiver<(usize, ServiceState)>,
        requests: &Sender<Request>,
        stop: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<(), MqttError> {
        let mqtt = &self.setup.mqtt;
        if mqtt.commands {
            let _ = self.client.try_subscribe(mqtt.topic("command"), QoS::AtLeastOnce);
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                self.sign_off();
                return Ok(());
            }
            while let Ok((queue, service)) = control.try_recv() {
                if (queue, service) != (self.state.queue, self.state.service) {
                    (self.state.queue, self.state.service) = (queue, service);
                    self.status_due = Some(Instant::now());
                }
            }
            if self.connected {
                self.publish_results()?;
                if self.status_due.is_some_and(|due| Instant::now() >= due) {
                    self.publish_status();
                }
            }
            let event = match self.connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(event)) => event,
                Ok(Err(source)) => {
                    return Err(MqttError::Connection {
                        broker: self.broker(),
                        source: Box::new(source),
                    })
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(MqttError::Closed(self.broker())),
            };
            match event {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    self.connected = true;
                    self.status_due = Some(Instant::now());
                    let again = backoff.worked();
                    log::info!(
                        "MQTT {}: connected{}; publishing from result #{}",
                        self.broker(),
                        if again { " again" } else { "" },
                        self.next
                    );
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => self.flight.numbered(pkid),
                Event::Incoming(Incoming::PubAck(ack)) => {
                    if let Some(through) = self.flight.acked(ack.pkid) {
                        self.state.cursor.published_through = through;
                        self.state.cursor.save(&self.setup.cursor)?;
                        self.status_soon();
                    }
                }
                Event::Incoming(Incoming::Publish(message)) if message.topic == mqtt.topic("command") => {
                    self.command(&message.payload, requests);
                }
                _ => {}
            }
        }
    }

    /// Publish journal records from `next` on while the window has room.
    fn publish_results(&mut self) -> Result<(), MqttError> {
        let room = self.flight.room();
        // an idle journal is looked at twice a second, not at every event
        let rested = self
            .idle_since
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
        if room == 0 || !rested {
            return Ok(());
        }
        let mut records = Records::open_at(&self.setup.journal, self.offset, self.next).map_err(MqttError::Journal)?;
        let mut published = 0;
        while published < room {
            let line_start = records.position();
            let Some(record) = records.next() else { break };
            let record = record.map_err(MqttError::Journal)?;
            let payload = serde_json::to_vec(&record).expect("records serialize");
            let topic = self.setup.mqtt.topic("result");
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                // the client's queue is full: this record again at the next look
                self.offset = line_start;
                return Ok(());
            }
            self.flight.published(Sent::Result(record.seq));
            self.note_last(&record);
            self.next = record.seq + 1;
            published += 1;
        }
        self.offset = records.position();
        self.idle_since = (published == 0).then(Instant::now);
        Ok(())
    }

    /// The status again within a second: a burst of results makes one status, not one each.
    fn status_soon(&mut self) {
        let soon = Instant::now() + Duration::from_secs(1);
        self.status_due = Some(self.status_due.map_or(soon, |due| due.min(soon)));
    }

    fn note_last(&mut self, record: &Record) {
        if self.state.last.as_ref().is_none_or(|(seq, _)| record.seq > *seq) {
            self.state.last = Some((record.seq, record.time.clone()));
        }
    }

    fn publish_status(&mut self) {
        let setup = self.setup;
        let disk = setup.journal.parent().and_then(disk_space);
        let status = Status {
            state: self.state.service.as_str(),
            online: true,
            firmware: Some(&setup.firmware),
            models: Some(&setup.models),
            queue: Some(self.state.queue),
            disk_free_bytes: disk.as_ref().map(|d| d.free),
            disk_total_bytes: disk.as_ref().map(|d| d.total),
            last_seq: self.state.last.as_ref().map(|(seq, _)| *seq),
            last_result_time: self.state.last.as_ref().map(|(_, time)| time.as_str()),
            published_through: Some(self.state.cursor.published_through),
            ..Status::offline(setup.mqtt.device_id.as_str())
        };
        let payload = serde_json::to_vec(&status).expect("a status serializes");
        if self
            .client
            .try_publish(setup.mqtt.topic("status"), QoS::AtLeastOnce, true, payload)
            .is_ok()
        {
            self.flight.published(Sent::Other);
            self.status_due = Some(Instant::now() + Duration::from_secs(setup.mqtt.status_s.get()));
        }
    }

    /// A command from `ptxd/<device_id>/command`, as the serial host would send it.
    fn command(&mut self, payload: &[u8], requests: &Sender<Request>) {
        let line = payload.strip_suffix(b"\n").unwrap_or(payload);
        match parse_command(line) {
            Ok(Command::Status) => {
                log::info!("MQTT command STATUS");
                self.status_due = Some(Instant::now());
            }
            Ok(Command::Replay(from)) => {
                log::info!("MQTT command REPLAY {from}: publishing the journal again from #{from}");
                // only ever back: a jump ahead would pass over results the broker never had
                if from < self.next {
                    self.offset = Position::default();
                    self.next = from.max(1);
                }
            }
            Ok(Command::Trigger) => {
                log::info!("MQTT command TRIGGER");
                let _ = requests.send(Request::Trigger);
            }
            Ok(other @ (Command::Ack(_) | Command::Nak(_))) => {
                log::warn!("MQTT command {other:?} ignored: the broker's PUBACK is the acknowledgement over MQTT");
            }
            Err(e) => log::warn!("MQTT command ignored: {e}"),
        }
    }

    /// A clean stop: the status says `offline` (the last will is for the unclean ones).
    fn sign_off(&mut self) {
        if !self.connected {
            return;
        }
        let offline = serde_json::to_vec(&Status::offline(self.setup.mqtt.device_id.as_str())).expect("serializes");
        let topic = self.setup.mqtt.topic("status");
        if self.client.try_publish(topic, QoS::AtLeastOnce, true, offline).is_err() {
            return;
        }
        self.flight.published(Sent::Other);
        // wait briefly for the broker to have it, then disconnect
        let until = Instant::now() + Duration::from_secs(2);
        let mut disconnecting = false;
        while Instant::now() < until {
            match self.connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => self.flight.numbered(pkid),
                Ok(Ok(Event::Incoming(Incoming::PubAck(ack)))) => {
                    if let Some(through) = self.flight.acked(ack.pkid) {
                        self.state.cursor.published_through = through;
                        let _ = self.state.cursor.save(&self.setup.cursor);
                    }
                    if self.flight.numbered.is_empty() && self.flight.unnumbered.is_empty() && !disconnecting {
                        let _ = self.client.try_disconnect();
                        disconnecting = true;
                    }
                }
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => return,
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// The client's settings: who ptxd is, its last will, TLS and credentials.
fn options(mqtt: &MqttConfig, secrets: &Secrets) -> MqttOptions {
    let id = mqtt.device_id.as_str();
    let mut options = MqttOptions::new(format!("ptxd-{id}"), mqtt.broker.host(), mqtt.broker.port());
    options
        .set_keep_alive(Duration::from_secs(mqtt.keep_alive_s.get()))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            mqtt.topic("status"),
            serde_json::to_vec(&Status::offline(id)).expect("serializes"),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((user, password)) = &secrets.credentials {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &secrets.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
    }
    options
}

/// What the config's files hold, read once at start: a wrong path or a bad certificate
/// stops start-up with its name, rather than failing every connection.
#[derive(Clone)]
pub struct Secrets {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The user name and the first line of `password_file`.
    credentials: Option<(String, String)>,
}

impl Secrets {
    pub fn load(mqtt: &MqttConfig) -> Result<Secrets, MqttError> {
        let credentials = match (&mqtt.username, &mqtt.password_file) {
            (Some(user), Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| MqttError::File {
                    path: path.clone(),
                    source,
                })?;
                Some((user.clone(), text.lines().next().unwrap_or_default().to_string()))
            }
            _ => None,
        };
        Ok(Secrets {
            tls: tls_config(mqtt)?,
            credentials,
        })
    }
}

/// The TLS client settings `mqtt` asks for (None for plain text on loopback): the roots
/// from `ca_file` or the system, and the client certificate when one is given.
fn tls_config(mqtt: &MqttConfig) -> Result<Option<Arc<rustls::ClientConfig>>, MqttError> {
    if !mqtt.tls {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &mqtt.ca_file {
        Some(path) => {
            for cert in pem_certificates(path)? {
                roots.add(cert).map_err(|e| MqttError::Pem {
                    path: path.clone(),
                    reason: format!("not a CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(MqttError::NoRoots);
    }
    // ring, not rustls's aws-lc default (C built by cmake for every target); rustls 0.23.48
    // marks it deprecated for its lack of post-quantum key exchange, which a clinic's broker
    // does not offer today
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(MqttError::Tls)?
        .with_root_certificates(roots);
    let config = match (&mqtt.client_cert, &mqtt.client_key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| MqttError::Pem {
                path: key.clone(),
                reason: format!("no private key read: {e}"),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| MqttError::Pem {
                    path: cert.clone(),
                    reason: format!("cannot be the client certificate with {}: {e}", key.display()),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// Every certificate in a PEM file; none is an error.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let pem = |reason: String| MqttError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// What `ptxd doctor` learns of the broker: it connects as ptxd would (TLS, credentials),
/// subscribes to the device's own status topic and reads the retained status, if any.
pub fn check_broker(mqtt: &MqttConfig, wait: Duration) -> Result<Option<String>, MqttError> {
    let broker = mqtt.broker.to_string();
    let mut probe = mqtt.clone();
    // its own client id: the broker would otherwise drop the running service to let it in
    probe.device_id = crate::config::DeviceId::try_from(format!("{}-doctor", mqtt.device_id.as_str()))
        .unwrap_or_else(|_| mqtt.device_id.clone());
    let mut options = options(&probe, &Secrets::load(mqtt)?);
    // no last will: the doctor leaving must not mark the device offline
    options.set_last_will(LastWill::new(mqtt.topic("doctor"), Vec::new(), QoS::AtMostOnce, false));
    let (client, mut connection) = Client::new(options, 4);
    let _ = client.try_subscribe(mqtt.topic("status"), QoS::AtLeastOnce);
    let until = Instant::now() + wait;
    let mut subscribed = false;
    let mut status = None;
    while Instant::now() < until {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => {
                subscribed = true;
                // a retained status comes right after the SUBACK, if there is one
                let settle = Instant::now() + Duration::from_millis(500);
                while status.is_none() && Instant::now() < settle {
                    if let Ok(Ok(Event::Incoming(Incoming::Publish(p)))) =
                        connection.recv_timeout(Duration::from_millis(100))
                    {
                        status = Some(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                }
                break;
            }
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                status = Some(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Err(source)) => {
                return Err(MqttError::Connection {
                    broker,
                    source: Box::new(source),
                })
            }
            Err(RecvTimeoutError::Disconnected) => return Err(MqttError::Closed(broker)),
        }
    }
    let _ = client.try_disconnect();
    let _ = connection.recv_timeout(Duration::from_millis(200));
    match subscribed {
        true => Ok(status),
        false => Err(MqttError::NoAnswer(broker, wait)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_waits_for_the_lowest_result_in_flight() {
        let mut flight = Flight::new(4);
        for seq in [5, 6, 8] {
            // 7: a corrupt journal line, never published
            flight.published(Sent::Result(seq));
        }
        flight.published(Sent::Other);
        for pkid in 1..=4 {
            flight.numbered(pkid);
        }
        assert_eq!(flight.room(), WINDOW - 4);
        assert_eq!(flight.acked(2), None, "#6 acknowledged, #5 still in flight");
        assert_eq!(flight.acked(4), None, "the status moves nothing");
        assert_eq!(flight.acked(1), Some(6), "#5 and #6 now");
        assert_eq!(flight.acked(3), Some(8), "past the seq the journal lacks");
        assert_eq!(flight.room(), WINDOW);
        // a replay of results the broker has: they move nothing
        flight.published(Sent::Result(5));
        flight.numbered(9);
        assert_eq!(flight.acked(9), None);
        assert_eq!(flight.through, 8);
    }

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
