//! The serial link to the digitizer's host: frames out, commands in
//! (`docs/serial-protocol.md` is the contract).
//!
//! Every frame ptxd sends is one line, `<compact JSON>*<CRC-32 as 8 uppercase hex>\n`, the
//! journal's own line format, so a result goes out byte for byte as it was journaled plus
//! the protocol fields. The host answers with short text commands (`ACK 12`, `NAK 12`,
//! `STATUS`, `REPLAY 5`, `TRIGGER`). Reading the host is defensive: a line is at most
//! [`MAX_COMMAND_LEN`] bytes, anything else (garbage, binary noise from a cable plugged in
//! mid-line, unknown words) becomes an error frame, never a crash.
//!
//! [`Link`] runs the protocol over any byte stream (a serial port, a pty in the tests):
//! `hello` on open, then every result the host has not acknowledged, in seq order, at most
//! [`WINDOW`] unacknowledged at a time (so a long backlog after an outage does not hold up
//! commands or new results for minutes at 115200 baud), the backlog read from the journal as
//! the window opens rather than held in memory; each result resent with exponential backoff
//! until its `ACK`; a host that stops reading (writes time out) keeps the link open, is tried
//! once per ACK timeout and resent to later; `NAK`, `REPLAY` and `STATUS` answered from the
//! journal, a record at a time. A host that floods garbage gets a bounded answer
//! ([`MAX_BAD_COMMAND_ERRORS`]). Acknowledgements are kept on disk in [`AckState`], so a
//! reboot or a crash replays exactly what the host has not confirmed. [`LinkService`] is
//! the thread the daemon starts: it opens the configured port, notices an unplug (a read or
//! write error) and reopens with backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::base::files::write_durably;
use crate::base::outcome::{ErrorReason, ServiceState};
use crate::base::worker::{nap, Backoff, Worker};
use crate::config::SerialConfig;
use crate::model::infer::ModelVersions;
use crate::record::journal::{encode_line, JournalError, Record, Records};
use crate::sink::{Delivery, Sink, SinkError};

/// The protocol version, `"v"` in every frame. Raised on any incompatible change.
pub const PROTOCOL_VERSION: u32 = crate::base::outcome::VERSION;

/// Results in flight (sent, not yet acknowledged) at most; the rest of a backlog waits.
pub const WINDOW: usize = 8;

/// The longest host line accepted, without its newline.
pub const MAX_COMMAND_LEN: usize = 64;

/// `bad-command` error frames answered per [`Link::poll`] at most; the bad lines beyond are
/// counted in one more. A host flooding garbage must not make ptxd talk as much back (the
/// line is shared with results, and the frames would queue in memory on both sides).
pub const MAX_BAD_COMMAND_ERRORS: usize = 8;

/// A command from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The result with this seq is delivered; stop resending it.
    Ack(u64),
    /// The result with this seq arrived damaged; send it again.
    Nak(u64),
    /// Send a status frame now.
    Status,
    /// Send every journaled result from this seq on, in order.
    Replay(u64),
    /// Analyze the current capture frame now.
    Trigger,
}

/// Parse one host line (without its newline; a trailing `\r` is allowed).
pub fn parse_command(line: &[u8]) -> Result<Command, String> {
    if line.len() > MAX_COMMAND_LEN {
        return Err(format!("line of {} bytes, the limit is {MAX_COMMAND_LEN}", line.len()));
    }
    let text = std::str::from_utf8(line).map_err(|_| "line is not text".to_string())?;
    let words: Vec<&str> = text.trim_end_matches('\r').split_ascii_whitespace().collect();
    let seq = |word: Option<&&str>| -> Result<u64, String> {
        let w = word.ok_or("missing sequence number")?;
        w.parse().map_err(|_| format!("{w:?} is not a sequence number"))
    };
    match words.as_slice() {
        ["ACK", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Ack),
        ["NAK", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Nak),
        ["REPLAY", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Replay),
        ["STATUS"] => Ok(Command::Status),
        ["TRIGGER"] => Ok(Command::Trigger),
        [] => Err("empty line".into()),
        [word, ..] => Err(format!("unknown or malformed command {word:?}")),
    }
}

/// A frame with the protocol fields first (`v`, `type`, `seq`) and `body` after them.
fn frame(kind: &str, seq: u64, body: impl Serialize) -> String {
    let mut object = Map::new();
    object.insert("v".into(), json!(PROTOCOL_VERSION));
    object.insert("type".into(), json!(kind));
    object.insert("seq".into(), json!(seq));
    // Through text, not `to_value`: that widens f32 to f64 (0.83 -> 0.8299999833106995),
    // and a result frame must carry the very numbers the journal line has.
    let text = serde_json::to_string(&body).expect("frames serialise");
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) {
        for (k, v) in fields {
            object.entry(k).or_insert(v);
        }
    }
    encode_line(&Value::Object(object).to_string())
}

/// A journaled result; its `seq` is the record's.
pub fn result_frame(record: &Record) -> String {
    frame("result", record.seq, record)
}

/// What ptxd says when the link opens: who it is and where its journal stands.
pub struct Hello<'a> {
    pub device: &'a str,
    pub firmware: &'a str,
    pub models: &'a ModelVersions,
    /// The last journaled seq (0 when the journal is empty).
    pub last_seq: u64,
}

pub fn hello_frame(h: &Hello<'_>) -> String {
    frame(
        "hello",
        h.last_seq,
        json!({"device": h.device, "firmware": h.firmware, "models": h.models, "last_seq": h.last_seq}),
    )
}

/// A heartbeat or an answer to `STATUS`. `seq` is the last journaled seq.
pub fn status_frame(last_seq: u64, unacked: u64, queue: usize, state: ServiceState) -> String {
    frame(
        "status",
        last_seq,
        json!({"last_seq": last_seq, "unacked": unacked, "queue": queue, "state": state.as_str()}),
    )
}

/// Something failed that is not a journaled result: a host line ptxd could not take, a
/// capture device lost. `seq` is the last journaled seq.
pub fn error_frame(last_seq: u64, reason: ErrorReason, detail: &str) -> String {
    frame("error", last_seq, json!({"reason": reason.as_str(), "detail": detail}))
}

/// Which results the host has acknowledged, kept on disk (a small JSON file rewritten
/// atomically on each ACK): every seq up to `through`, and the ones in `above`. ACKs may
/// come out of order; `above` folds into `through` as the gaps fill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckState {
    pub through: u64,
    pub above: BTreeSet<u64>,
    #[serde(skip)]
    path: PathBuf,
}

impl AckState {
    /// Load the state, or start empty when the file does not exist yet. A file that cannot
    /// be parsed is an error (resending everything silently would flood the host).
    pub fn open(path: &Path) -> io::Result<AckState> {
        let mut state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<AckState>(&bytes)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == ErrorKind::NotFound => AckState::new(path),
            Err(e) => return Err(e),
        };
        state.path = path.to_path_buf();
        Ok(state)
    }

    /// No ACKs yet, to be kept at `path`.
    pub fn new(path: &Path) -> AckState {
        AckState {
            path: path.to_path_buf(),
            ..AckState::default()
        }
    }

    pub fn is_acked(&self, seq: u64) -> bool {
        seq <= self.through || self.above.contains(&seq)
    }

    /// Record an ACK durably. Returns false when it was already acknowledged.
    pub fn ack(&mut self, seq: u64) -> io::Result<bool> {
        if self.is_acked(seq) {
            return Ok(false);
        }
        self.above.insert(seq);
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
        let json = serde_json::to_vec(self).expect("ack state serialises");
        write_durably(&self.path, &json)?;
        Ok(true)
    }
}

/// Resend timing.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Wait this long for an ACK before the first resend; doubled after each resend.
    pub ack_timeout: Duration,
    /// The longest wait between resends.
    pub max_backoff: Duration,
}

/// What the owner of the link should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The host asked for the current capture frame to be analyzed.
    Trigger,
    /// The host has the result with this seq.
    Acked(u64),
    /// The port is open and hello was sent (from [`LinkService`] only). Nothing is known
    /// of a host yet: a port opens with no cable in it.
    Up,
    /// The first line from a host since the port opened: someone is there.
    HostSeen,
    /// The port failed or could not be opened (from [`LinkService`] only).
    Down,
}

struct Pending {
    frame: String,
    resends: u32,
    due: Instant,
}

/// The protocol over one open port.
pub struct Link<P> {
    port: P,
    /// Read for backlog, NAK and REPLAY; written only by the journal's owner.
    journal: PathBuf,
    acks: AckState,
    config: LinkConfig,
    pending: BTreeMap<u64, Pending>,
    /// The backlog, kept on disk: every journaled result from seq `next` on that is not
    /// acknowledged waits for room in the window, and is read from the journal when it gets
    /// some. Holding it in memory instead would hold the whole journal for a host that never
    /// ACKs. Every result in flight has a seq below `next`.
    next: u64,
    /// Where in the journal to start looking for `next` (a line start at or before it).
    cursor: u64,
    /// A write timed out part-way: the host's next line starts with a torn frame.
    torn: bool,
    /// Writes are timing out (the host is not reading): when the last one did. Logged once
    /// per stall.
    stalled: Option<Instant>,
    inbox: Vec<u8>,
    /// Inside an over-long host line: drop bytes up to its newline.
    discarding: bool,
    /// Bad lines in this poll (see [`MAX_BAD_COMMAND_ERRORS`]).
    bad_lines: usize,
    /// A whole line (any line) has come from the host since the port opened.
    host_seen: bool,
    last_seq: u64,
    /// What `status` frames report; kept current by the owner ([`Link::set_status`]).
    queue: usize,
    state: ServiceState,
}

/// A journal read failed while answering the host.
fn journal_io(e: JournalError) -> io::Error {
    io::Error::other(e.to_string())
}

impl<P: Read + Write> Link<P> {
    /// Say hello, then send every journaled result the host has not acknowledged, in order.
    /// `port` should have a short read timeout: [`Link::poll`] reads until it times out.
    pub fn open(port: P, hello: &Hello<'_>, journal: &Path, acks: AckState, config: LinkConfig) -> io::Result<Self> {
        let next = acks.through + 1;
        let mut link = Link {
            port,
            journal: journal.to_path_buf(),
            acks,
            config,
            pending: BTreeMap::new(),
            next,
            cursor: 0,
            torn: false,
            stalled: None,
            inbox: Vec::new(),
            discarding: false,
            bad_lines: 0,
            host_seen: false,
            last_seq: hello.last_seq,
            queue: 0,
            state: ServiceState::Ready,
        };
        link.write(&hello_frame(hello))?;
        link.feed()?;
        Ok(link)
    }

    /// Send waiting results, read from the journal, while the window has room.
    fn feed(&mut self) -> io::Result<()> {
        let room = WINDOW - self.pending.len();
        if room == 0 || self.next > self.last_seq {
            return Ok(());
        }
        let mut records = Records::open_at(&self.journal, self.cursor, self.next).map_err(journal_io)?;
        let mut batch = Vec::with_capacity(room);
        let mut seen = self.next - 1;
        for record in records.by_ref() {
            let record = record.map_err(journal_io)?;
            seen = seen.max(record.seq);
            if !self.acks.is_acked(record.seq) && !self.pending.contains_key(&record.seq) {
                batch.push(record);
                if batch.len() == room {
                    break;
                }
            }
        }
        self.cursor = records.offset();
        // at the journal's end everything up to `last_seq` has been looked at (a seq the
        // journal lacks is a corrupt line, logged when it was opened: never sent)
        let through = if batch.len() == room {
            seen
        } else {
            self.last_seq.max(seen)
        };
        self.next = through + 1;
        for record in &batch {
            self.transmit(record)?;
        }
        Ok(())
    }

    /// Send a journaled result and resend it until ACKed.
    /// A result already in flight or acknowledged is skipped: a record can reach the link
    /// both from the journal's backlog and from the pipeline around a reopen.
    pub fn send_result(&mut self, record: &Record) -> io::Result<()> {
        if record.seq < self.next || self.acks.is_acked(record.seq) {
            return Ok(());
        }
        self.last_seq = self.last_seq.max(record.seq);
        if record.seq == self.next && self.pending.len() < WINDOW {
            // nothing waits before it: send it as it came, without reading it back
            self.next += 1;
            return self.transmit(record);
        }
        self.feed()
    }

    fn transmit(&mut self, record: &Record) -> io::Result<()> {
        let frame = result_frame(record);
        self.write(&frame)?;
        self.pending.insert(
            record.seq,
            Pending {
                frame,
                resends: 0,
                due: Instant::now() + self.config.ack_timeout,
            },
        );
        Ok(())
    }

    /// Set what `status` frames report: files waiting for analysis and a one-word state
    pub fn set_status(&mut self, queue: usize, state: ServiceState) {
        self.queue = queue;
        self.state = state;
    }

    /// Send an `error` frame about a device or frame failure.
    pub fn send_error(&mut self, reason: ErrorReason, detail: &str) -> io::Result<()> {
        let frame = error_frame(self.last_seq, reason, detail);
        self.write(&frame)
    }

    /// Send a `status` frame now (the heartbeat).
    pub fn send_status(&mut self) -> io::Result<()> {
        let frame = status_frame(self.last_seq, self.unacked() as u64, self.queue, self.state);
        self.write(&frame)
    }

    /// Results not yet acknowledged: in flight or waiting for room in the window.
    pub fn unacked(&self) -> usize {
        // the backlog, counted without reading it: seqs from `next` to `last_seq`, less
        // those acknowledged out of order
        let from = self.next.max(self.acks.through + 1);
        let waiting = match self.last_seq.checked_sub(from) {
            Some(span) => span + 1 - self.acks.above.range(from..=self.last_seq).count() as u64,
            None => 0,
        };
        self.pending.len() + waiting as usize
    }

    pub fn acks(&self) -> &AckState {
        &self.acks
    }

    /// Read what the host sent (until the port's read timeout), answer it, and resend
    /// results whose ACK is overdue. An Err means the port failed: the link is down.
    pub fn poll(&mut self) -> io::Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut buf = [0u8; 256];
        self.bad_lines = 0;
        // bounded, so a host that never stops talking cannot starve the resends
        for _ in 0..64 {
            match self.port.read(&mut buf) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "serial port closed")),
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' && !self.host_seen {
                            // any line, a bad one too, proves a host is there
                            self.host_seen = true;
                            events.push(Event::HostSeen);
                        }
                        if let Some(event) = self.take_byte(b)? {
                            events.push(event);
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if let Some(more) = self.bad_lines.checked_sub(MAX_BAD_COMMAND_ERRORS).filter(|&n| n > 0) {
            let detail = format!("{more} more bad line(s) ignored without an answer each");
            self.write(&error_frame(self.last_seq, ErrorReason::BadCommand, &detail))?;
        }
        self.resend_overdue()?;
        self.feed()?;
        Ok(events)
    }

    fn take_byte(&mut self, b: u8) -> io::Result<Option<Event>> {
        if b != b'\n' {
            if self.discarding {
                return Ok(None);
            }
            self.inbox.push(b);
            if self.inbox.len() > MAX_COMMAND_LEN + 1 {
                // +1: a CR before the newline is allowed
                self.inbox.clear();
                self.discarding = true;
                self.bad_command(format!("line longer than {MAX_COMMAND_LEN} bytes, ignored"))?;
            }
            return Ok(None);
        }
        if std::mem::take(&mut self.discarding) {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.inbox);
        match parse_command(&line) {
            Ok(command) => self.execute(command),
            Err(detail) => {
                self.bad_command(detail)?;
                Ok(None)
            }
        }
    }

    fn bad_command(&mut self, detail: String) -> io::Result<()> {
        self.bad_lines += 1;
        if self.bad_lines > MAX_BAD_COMMAND_ERRORS {
            return Ok(());
        }
        self.write(&error_frame(self.last_seq, ErrorReason::BadCommand, &detail))
    }

    fn execute(&mut self, command: Command) -> io::Result<Option<Event>> {
        match command {
            // an ACK for a result not sent yet would silence it before it exists
            Command::Ack(seq) if seq > self.last_seq => {
                let detail = format!(
                    "ACK {seq}: no result with that seq was sent (last is {})",
                    self.last_seq
                );
                self.write(&error_frame(self.last_seq, ErrorReason::UnknownSeq, &detail))?;
            }
            Command::Ack(seq) => {
                self.pending.remove(&seq);
                self.acks.ack(seq)?;
                return Ok(Some(Event::Acked(seq)));
            }
            Command::Nak(seq) => match self.pending.get(&seq) {
                Some(p) => {
                    let frame = p.frame.clone();
                    self.write(&frame)?;
                }
                None => self.replay(seq, Some(seq))?,
            },
            Command::Replay(from) => self.replay(from, None)?,
            Command::Status => self.send_status()?,
            Command::Trigger => return Ok(Some(Event::Trigger)),
        }
        Ok(None)
    }

    /// Send journaled results from `from` (only `only` when given), in order.
    /// Read one record at a time: a `REPLAY 1` walks the whole journal. A host that stops
    /// reading midway ends the replay (it can ask again), rather than having every remaining
    /// frame wait out a write timeout.
    fn replay(&mut self, from: u64, only: Option<u64>) -> io::Result<()> {
        if self.muted() {
            return Ok(()); // the answer would be dropped: do not read the journal for it
        }
        let mut sent = false;
        for record in Records::open(&self.journal, from).map_err(journal_io)? {
            let record = record.map_err(journal_io)?;
            if only.is_some_and(|s| s != record.seq) {
                continue;
            }
            self.write(&result_frame(&record))?;
            sent = true;
            if only.is_some() || self.stalled.is_some() {
                return Ok(());
            }
        }
        if !sent {
            let detail = format!(
                "no journaled result with seq {from}{}",
                if only.is_some() { "" } else { " or later" }
            );
            self.write(&error_frame(self.last_seq, ErrorReason::UnknownSeq, &detail))?;
        }
        Ok(())
    }

    fn resend_overdue(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(&s, _)| s)
            .collect();
        for seq in due {
            let (frame, wait) = {
                let p = self.pending.get_mut(&seq).expect("listed above");
                p.resends += 1;
                let wait = self
                    .config
                    .ack_timeout
                    .saturating_mul(1 << p.resends.min(16))
                    .min(self.config.max_backoff);
                p.due = now + wait;
                (p.frame.clone(), wait)
            };
            log::debug!("result #{seq}: no ACK, resending (next in {wait:?})");
            self.write(&frame)?;
        }
        Ok(())
    }

    /// A write timed out less than an ACK timeout ago: frames are dropped without trying.
    fn muted(&self) -> bool {
        self.stalled
            .is_some_and(|since| since.elapsed() < self.config.ack_timeout)
    }

    /// Write one frame. A host that does not read makes writes time out: that is not a
    /// broken link (an unplugged port fails reads too), so the frame is dropped, the link
    /// stays up, and unacknowledged results go again when their resend is due. While writes
    /// time out, one is tried per ACK timeout and the frames between are dropped at once:
    /// otherwise each would wait out the port's timeout, and a host that floods commands
    /// without reading the answers would slow the link to a crawl.
    fn write(&mut self, frame: &str) -> io::Result<()> {
        if self.muted() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(frame.len() + 1);
        if self.torn {
            bytes.push(b'\n'); // end the torn line: the host drops it (bad CRC)
        }
        bytes.extend_from_slice(frame.as_bytes());
        let mut done = 0;
        while done < bytes.len() {
            match self.port.write(&bytes[done..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "serial port took nothing")),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    // a line is left open when what went out does not end one
                    if done > 0 {
                        self.torn = bytes[done - 1] != b'\n';
                    }
                    if self.stalled.is_none() {
                        log::warn!("serial: the host is not reading (write timed out); results will be resent");
                    }
                    self.stalled = Some(Instant::now());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.torn = false;
        if self.stalled.take().is_some() {
            log::info!("serial: the host is reading again");
        }
        // no flush (tcdrain): the kernel sends what it holds, and waiting for the wire here
        // would stall the link on a line with flow control stuck
        Ok(())
    }
}

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
    pub firmware: String,
    pub models: ModelVersions,
}

/// What the daemon hands the link thread.
enum Outgoing {
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

fn serve(setup: &LinkSetup, inbox: &Receiver<Outgoing>, events: &Sender<Event>, stop: &AtomicBool) {
    let cfg = &setup.serial;
    let port_name = cfg.port.display().to_string();
    let acks_path = cfg
        .acks
        .clone()
        .unwrap_or_else(|| setup.journal.with_file_name("acks.json"));
    let config = LinkConfig {
        ack_timeout: Duration::from_millis(cfg.ack_timeout_ms.get()),
        max_backoff: Duration::from_millis(cfg.max_backoff_ms.get()),
    };
    let heartbeat = Duration::from_secs(cfg.heartbeat_s.get());
    let mut backoff = Backoff::new(Duration::from_millis(cfg.reopen_max_ms.get()));
    let mut status = (0usize, ServiceState::Ready);
    while !stop.load(Ordering::Relaxed) {
        let opened = serialport::new(&port_name, cfg.baud)
            .timeout(Duration::from_millis(50))
            .open_native()
            .map_err(io::Error::from)
            .and_then(|port| {
                // results sent while the link was down are in the journal: the backlog covers
                // them; errors from then are stale; the latest status still holds
                while let Ok(out) = inbox.try_recv() {
                    if let Outgoing::Status { queue, state } = out {
                        status = (queue, state);
                    }
                }
                let last_seq = Records::open(&setup.journal, 0)
                    .map_err(journal_io)?
                    .try_fold(0, |last, r| r.map(|r| last.max(r.seq)))
                    .map_err(journal_io)?;
                let acks = AckState::open(&acks_path).unwrap_or_else(|e| {
                    log::error!("serial: {e}; every journaled result will be offered to the host again");
                    AckState::new(&acks_path)
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
                        Outgoing::Result(record) => link.send_result(&record)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::journal::decode_line;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command(b"ACK 12"), Ok(Command::Ack(12)));
        assert_eq!(parse_command(b"NAK 3\r"), Ok(Command::Nak(3)));
        assert_eq!(parse_command(b"REPLAY 0"), Ok(Command::Replay(0)));
        assert_eq!(parse_command(b"STATUS"), Ok(Command::Status));
        assert_eq!(parse_command(b"TRIGGER"), Ok(Command::Trigger));
    }

    #[test]
    fn bad_commands_are_errors_with_a_reason() {
        for (line, why) in [
            (&b"ACK"[..], "missing"),
            (b"ACK twelve", "not a sequence number"),
            (b"ACK -1", "not a sequence number"),
            (b"ACK 1 2", "malformed"),
            (b"ack 1", "unknown"),
            (b"", "empty"),
            (b"\xff\xfe ACK 1", "not text"),
            (&[b'A'; 65][..], "limit"),
        ] {
            let err = parse_command(line).unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn frames_carry_version_type_seq_and_a_crc() {
        let line = error_frame(7, ErrorReason::BadCommand, "unknown command \"FOO\"");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let json = decode_line(line.trim_end()).expect("CRC matches");
        assert!(json.starts_with(r#"{"v":2,"type":"error","seq":7"#), "{json}");
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["reason"], "bad-command");
    }
}
