//! The serial link to the digitizer's host: frames out, commands in
//! (`docs/serial-protocol.md` is the contract). Its parts: [`protocol`] (frames and
//! commands), [`acks`] (what the host confirmed, on disk), [`link`] (the protocol over one
//! port) and [`service`] (the daemon's sink, reopening the port).
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

pub mod acks;
pub mod link;
pub mod protocol;
pub mod service;

pub use acks::AckState;
pub use link::{Event, Link, LinkConfig};
pub use protocol::*;
pub use service::{LinkService, LinkSetup};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::outcome::ErrorReason;
    use crate::record::journal::decode_line;
    use serde_json::Value;

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
            let err = parse_command(line).unwrap_err().to_string();
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
