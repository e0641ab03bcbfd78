//! The protocol's words: the frames ptxd sends (one line each, the journal's line format plus
//! the protocol fields) and the host's commands, parsed defensively.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::base::outcome::{ErrorReason, ServiceState};
use crate::model::infer::ModelVersions;
use crate::record::journal::{encode_line, Record};

/// The protocol version, `"v"` in every frame. Raised on any incompatible change.
pub const PROTOCOL_VERSION: u32 = crate::base::outcome::VERSION;

/// Results in flight (sent, not yet acknowledged) at most; the rest of a backlog waits.
pub const WINDOW: usize = 8;

/// The longest host line accepted, without its newline.
pub const MAX_COMMAND_LEN: usize = 64;

/// `bad-command` error frames answered per [`Link::poll`](super::Link::poll) at most; the bad lines beyond are
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

/// Why a host line is not a command. Its text is the `detail` of the `bad-command` error
/// frame the host gets back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCommand {
    #[error("line of {0} bytes, the limit is {MAX_COMMAND_LEN}")]
    TooLong(usize),
    #[error("line is not text")]
    NotText,
    #[error("missing sequence number")]
    MissingSeq,
    #[error("{0:?} is not a sequence number")]
    NotASeq(String),
    #[error("empty line")]
    Empty,
    #[error("unknown or malformed command {0:?}")]
    Unknown(String),
}

/// Parse one host line (without its newline; a trailing `\r` is allowed).
pub fn parse_command(line: &[u8]) -> Result<Command, BadCommand> {
    if line.len() > MAX_COMMAND_LEN {
        return Err(BadCommand::TooLong(line.len()));
    }
    let text = std::str::from_utf8(line).map_err(|_| BadCommand::NotText)?;
    let words: Vec<&str> = text.trim_end_matches('\r').split_ascii_whitespace().collect();
    let seq = |word: Option<&&str>| -> Result<u64, BadCommand> {
        let w = word.ok_or(BadCommand::MissingSeq)?;
        w.parse().map_err(|_| BadCommand::NotASeq(w.to_string()))
    };
    match words.as_slice() {
        ["ACK", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Ack),
        ["NAK", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Nak),
        ["REPLAY", rest @ ..] if rest.len() <= 1 => seq(rest.first()).map(Command::Replay),
        ["STATUS"] => Ok(Command::Status),
        ["TRIGGER"] => Ok(Command::Trigger),
        [] => Err(BadCommand::Empty),
        [word, ..] => Err(BadCommand::Unknown(word.to_string())),
    }
}

/// A frame with the protocol fields first (`v`, `type`, `seq`) and `body` after them.
pub(super) fn frame(kind: &str, seq: u64, body: impl Serialize) -> String {
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
