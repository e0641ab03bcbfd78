//! The protocol over one open port: hello, the backlog in a window, resends with backoff,
//! the host's commands answered from the journal.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::outcome::{ErrorReason, ServiceState};
use crate::record::journal::{first_seq, segments, JournalError, Position, Record, Records};

use super::acks::AckState;
use super::protocol::{
    error_frame, hello_frame, parse_command, result_frame, status_frame, Command, Hello, MAX_BAD_COMMAND_ERRORS,
    MAX_COMMAND_LEN, WINDOW,
};

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

pub(super) struct Pending {
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
    cursor: Position,
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
pub(super) fn journal_io(e: JournalError) -> io::Error {
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
            cursor: Position::default(),
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
        // the file (its first seq) the last record read came from
        let mut file = None;
        while let Some(record) = records.next() {
            let record = record.map_err(journal_io)?;
            let here = records.position().file();
            if record.seq > seen + 1 && self.certainly_absent(file, here, record.seq)? {
                self.pass_over(seen + 1..record.seq)?;
            }
            file = Some(here);
            seen = seen.max(record.seq);
            if !self.acks.is_acked(record.seq) && !self.pending.contains_key(&record.seq) {
                batch.push(record);
                if batch.len() == room {
                    break;
                }
            }
        }
        self.cursor = records.position();
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

    /// Whether the seqs missing before record `seq` (read from the file whose first record
    /// is `here`; the record before it from `file`) can never be read: they lie between two
    /// records of one file (a corrupt line), or below the oldest record the journal keeps
    /// (removed by retention). A gap across two files is not taken for either: the live file
    /// may have been sealed while this read listed the files, and its records then come at
    /// the next reopen.
    fn certainly_absent(&self, file: Option<u64>, here: u64, seq: u64) -> io::Result<bool> {
        if file.is_some() {
            return Ok(file == Some(here));
        }
        let oldest = match segments(&self.journal)?.first() {
            Some(segment) => Some(segment.first),
            None => first_seq(&self.journal)?,
        };
        Ok(oldest.is_some_and(|oldest| seq <= oldest))
    }

    /// Seqs the journal lacks below a record it has: a corrupt line (logged when the journal
    /// was opened), or segments retention removed before a serial host was configured; never
    /// to be sent. Counted as taken (see [`AckState::pass_over`]).
    fn pass_over(&mut self, seqs: std::ops::Range<u64>) -> io::Result<()> {
        let (first, last) = (seqs.start, seqs.end - 1);
        if self.acks.pass_over(seqs)? > 0 {
            log::warn!(
                "serial: result(s) #{first}..#{last} are not in the journal (a corrupt line, or removed by retention before this serial host was configured): the host can never have them; counted as delivered"
            );
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
            Err(bad) => {
                self.bad_command(bad.to_string())?;
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
