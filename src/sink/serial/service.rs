//! The link as the daemon's sink: a thread that opens the configured port, runs [`Link`] on
//! it and reopens it with backoff when it fails.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::base::outcome::{ErrorReason, ServiceState};
use crate::base::worker::{nap, Backoff, Worker};
use crate::config::SerialConfig;
use crate::model::infer::ModelVersions;
use crate::record::journal::Record;
use crate::sink::{Delivery, Sink, SinkError};

use super::acks::AckState;
use super::link::{Event, Link, LinkConfig};
use super::protocol::Hello;

/// The link as a service: a thread that opens the configured port, runs [`Link`] on it,
/// and when the port fails (unplugged, host gone) reopens it with backoff, replaying what
/// the host has not acknowledged. Results reach it through its [`Sink`] implementation after
/// they are journaled; while the link is down they simply wait in the journal.
pub struct LinkService {
    outbox: Sender<Outgoing>,
    _worker: Worker,
}

/// What the link service needs to know.
#[derive(Debug, Clone)]
pub struct LinkSetup {
    pub serial: SerialConfig,
    pub journal: PathBuf,
    /// The host's ACKs on disk (`Config::acks_file`).
    pub acks: PathBuf,
    pub firmware: String,
    pub models: ModelVersions,
    /// The journal's last seq when the service starts (0: empty). The results delivered
    /// since raise it, so a reopened port's `hello` needs no read of the journal.
    pub last_seq: u64,
}

/// What the daemon hands the link thread.
pub(super) enum Outgoing {
    Result(Box<Record>),
    Error { reason: ErrorReason, detail: String },
    Status { queue: usize, state: ServiceState },
}

impl LinkService {
    /// Start the link thread; what the host asks for and link changes arrive on `events`.
    pub fn start(setup: LinkSetup, events: Sender<Event>) -> io::Result<LinkService> {
        let (outbox, inbox) = mpsc::channel();
        let worker = Worker::spawn("serial", move |stop| serve(&setup, &inbox, &events, stop))?;
        Ok(LinkService {
            outbox,
            _worker: worker,
        })
    }

    /// Report a device or frame failure as an `error` frame (dropped while the link is down:
    /// errors are news, results are records).
    pub fn send_error(&self, reason: ErrorReason, detail: &str) {
        let _ = self.outbox.send(Outgoing::Error {
            reason,
            detail: detail.into(),
        });
    }

    /// What `status` frames say: images waiting and a one-word state.
    pub fn set_status(&self, queue: usize, state: ServiceState) {
        let _ = self.outbox.send(Outgoing::Status { queue, state });
    }
}

/// Every journaled result goes to the link thread, which sends it (or leaves it in the
/// journal for the replay while the link is down).
impl Sink for LinkService {
    fn name(&self) -> &'static str {
        "serial link"
    }

    fn deliver(&mut self, d: &Delivery<'_>) -> Result<(), SinkError> {
        self.outbox
            .send(Outgoing::Result(Box::new(d.record.clone())))
            .map_err(|_| {
                SinkError("the serial link thread has stopped; results wait in the journal for a restart".into())
            })
    }
}

pub(super) fn serve(setup: &LinkSetup, inbox: &Receiver<Outgoing>, events: &Sender<Event>, stop: &AtomicBool) {
    let cfg = &setup.serial;
    let port_name = cfg.port.display().to_string();
    let config = LinkConfig {
        ack_timeout: Duration::from_millis(cfg.ack_timeout_ms.get()),
        max_backoff: Duration::from_millis(cfg.max_backoff_ms.get()),
    };
    let heartbeat = Duration::from_secs(cfg.heartbeat_s.get());
    let mut backoff = Backoff::new(Duration::from_millis(cfg.reopen_max_ms.get()));
    let mut status = (0usize, ServiceState::Ready);
    let mut last_seq = setup.last_seq;
    while !stop.load(Ordering::Relaxed) {
        let opened = serialport::new(&port_name, cfg.baud)
            .timeout(Duration::from_millis(50))
            .open_native()
            .map_err(io::Error::from)
            .and_then(|port| {
                // results sent while the link was down are in the journal: the backlog covers
                // them; errors from then are stale; the latest status still holds
                while let Ok(out) = inbox.try_recv() {
                    match out {
                        Outgoing::Status { queue, state } => status = (queue, state),
                        Outgoing::Result(record) => last_seq = last_seq.max(record.seq),
                        Outgoing::Error { .. } => {}
                    }
                }
                let acks = AckState::open(&setup.acks).unwrap_or_else(|e| {
                    log::error!("serial: {e}; every journaled result will be offered to the host again");
                    AckState::new(&setup.acks)
                });
                let hello = Hello {
                    device: &cfg.device_id,
                    firmware: &setup.firmware,
                    models: &setup.models,
                    last_seq,
                };
                Link::open(port, &hello, &setup.journal, acks, config)
            });
        let mut link = match opened {
            Ok(link) => link,
            Err(e) => {
                if backoff.failed() {
                    log::warn!("serial {port_name}: cannot open the link: {e}; retrying with backoff");
                    let _ = events.send(Event::Down);
                }
                backoff.sleep(stop);
                continue;
            }
        };
        log::info!(
            "serial {port_name}: port open, hello sent, {} result(s) awaiting ACK; no host seen yet",
            link.unacked()
        );
        link.set_status(status.0, status.1);
        let _ = events.send(Event::Up);
        backoff.worked();
        let mut last_status = Instant::now();
        let down = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            let step = (|| -> io::Result<()> {
                while let Ok(out) = inbox.try_recv() {
                    match out {
                        Outgoing::Result(record) => {
                            last_seq = last_seq.max(record.seq);
                            link.send_result(&record)?
                        }
                        Outgoing::Error { reason, detail } => link.send_error(reason, &detail)?,
                        Outgoing::Status { queue, state } => {
                            link.set_status(queue, state);
                            status = (queue, state);
                        }
                    }
                }
                for event in link.poll()? {
                    if event == Event::HostSeen {
                        log::info!("serial {port_name}: host seen (a line arrived)");
                    }
                    let _ = events.send(event);
                }
                if last_status.elapsed() >= heartbeat {
                    link.send_status()?;
                    last_status = Instant::now();
                }
                Ok(())
            })();
            if let Err(e) = step {
                break Some(e);
            }
        };
        if let Some(e) = down {
            log::warn!("serial {port_name}: link down: {e}; unacknowledged results will be replayed");
            let _ = events.send(Event::Down);
            nap(Duration::from_millis(200), stop);
        }
    }
}
