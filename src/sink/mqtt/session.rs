//! One connection to the broker, from connect to the first error or the stop: the journal
//! published from the cursor as the window opens, PUBACKs moving the cursor, the retained
//! status, and the commands.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Incoming, Outgoing, QoS, RecvTimeoutError};
use serde::Serialize;

use crate::base::files::now_rfc3339;
use crate::base::outcome::ServiceState;
use crate::base::worker::Backoff;
use crate::model::infer::ModelVersions;
use crate::record::journal::{Position, Record, Records};
use crate::record::retention::disk_space;
use crate::sink::serial::{parse_command, Command};

use super::connect::{options, Secrets};
use super::{MqttError, Request, State, UplinkSetup};

/// Results published and not yet acknowledged by the broker, at most.
pub const WINDOW: usize = 16;

/// The retained status (and, with `online: false`, the last will).
#[derive(Debug, Serialize)]
pub(super) struct Status<'a> {
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
    pub(super) fn offline(device: &'a str) -> Status<'a> {
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
pub(super) struct Session<'a> {
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
    pub(super) fn open(setup: &'a UplinkSetup, secrets: &Secrets, state: &'a mut State) -> Session<'a> {
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

    pub(super) fn run(
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
                Event::Incoming(Incoming::PubAck(ack)) => self.acknowledged(ack.pkid)?,
                Event::Incoming(Incoming::Publish(message)) if message.topic == mqtt.topic("command") => {
                    self.command(&message.payload, requests);
                }
                _ => {}
            }
        }
    }

    /// The broker has packet `pkid`: where that moves the cursor, save it, and tell the
    /// status soon.
    fn acknowledged(&mut self, pkid: u16) -> Result<(), MqttError> {
        if let Some(through) = self.flight.acked(pkid) {
            self.state.cursor.published_through = through;
            self.state.cursor.save(&self.setup.cursor)?;
            self.status_soon();
        }
        Ok(())
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
                    // stopping: a cursor that cannot be saved now resends those at the next start
                    let _ = self.acknowledged(ack.pkid);
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
}
