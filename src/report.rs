//! The serial protocol to the digitizer's host: frames out, commands in
//! (`docs/serial-protocol.md` is the contract; this module is its codec).
//!
//! Every frame ptxd sends is one line, `<compact JSON>*<CRC-32 as 8 uppercase hex>\n`, the
//! journal's own line format, so a result goes out byte for byte as it was journaled plus
//! the protocol fields. The host answers with short text commands (`ACK 12`, `NAK 12`,
//! `STATUS`, `REPLAY 5`, `TRIGGER`). Reading the host is defensive: a line is at most
//! [`MAX_COMMAND_LEN`] bytes, anything else (garbage, binary noise from a cable plugged in
//! mid-line, unknown words) becomes an error frame, never a crash.
//!
//! The link itself (resend until ACK, replay after an outage) comes with the device issue;
//! it is built on these frames and on `Journal::records_from`.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::infer::ModelVersions;
use crate::journal::{encode_line, Record};

/// The protocol version, `"v"` in every frame. Raised on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest host line accepted, without its newline.
pub const MAX_COMMAND_LEN: usize = 64;

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
pub fn status_frame(last_seq: u64, unacked: u64, queue: usize, state: &str) -> String {
    frame(
        "status",
        last_seq,
        json!({"last_seq": last_seq, "unacked": unacked, "queue": queue, "state": state}),
    )
}

/// Something failed that is not a journaled result: a host line ptxd could not take, a
/// capture device lost. `seq` is the last journaled seq.
pub fn error_frame(last_seq: u64, reason: &str, detail: &str) -> String {
    frame("error", last_seq, json!({"reason": reason, "detail": detail}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::decode_line;

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
        let line = error_frame(7, "bad-command", "unknown command \"FOO\"");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let json = decode_line(line.trim_end()).expect("CRC matches");
        assert!(json.starts_with(r#"{"v":1,"type":"error","seq":7"#), "{json}");
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["reason"], "bad-command");
    }
}
