//! The serial link over real pseudo-terminal pairs: ptxd's side is a [`Link`] on the pty
//! slave, the host is the test on the master. Covered: hello and backlog on open, ACKs out
//! of order and kept across a reopen, a host that never ACKs (resends with backoff), a host
//! that sends garbage, one that drops the line in the middle of a command, NAK, REPLAY,
//! STATUS and TRIGGER. The tests share one lock: ptys are a machine-wide resource.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ptxd::base::outcome::ServiceState;
use ptxd::record::journal::{decode_line, segments, Journal};
use ptxd::sink::serial::{AckState, Event, Hello, Link, LinkConfig};
use serde_json::Value;
use serialport::{SerialPort, TTYPort};

struct Rig {
    dir: tempfile::TempDir,
    journal: Journal,
}

impl Rig {
    /// A journal holding `n` results, seq 1..=n.
    fn new(n: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("journal.log")).unwrap();
        for i in 0..n {
            let mut r = common::record();
            r.source = format!("watch:{i}.dcm");
            journal.append(r).unwrap();
        }
        Rig { dir, journal }
    }

    /// Ten results in a journal sealed every few records; its segments.
    fn segmented() -> (Rig, Vec<ptxd::record::journal::Segment>) {
        let mut rig = Rig::new(0);
        let path = rig.journal.path().to_path_buf();
        rig.journal = Journal::open(&path).unwrap().rotate_at(1500);
        for _ in 0..10 {
            rig.journal.append(common::record()).unwrap();
        }
        let sealed = segments(&path).unwrap();
        (rig, sealed)
    }

    fn acks(&self) -> AckState {
        AckState::open(&self.dir.path().join("acks.json")).unwrap()
    }

    /// Open a link on a fresh pty pair; returns (link, host end).
    fn connect(&self, config: LinkConfig) -> (Link<TTYPort>, TTYPort) {
        let (mut host, mut device) = TTYPort::pair().unwrap();
        host.set_timeout(Duration::from_millis(30)).unwrap();
        device.set_timeout(Duration::from_millis(10)).unwrap();
        let models = common::models();
        let hello = Hello {
            device: "test-rig",
            firmware: "ptxd test",
            models: &models,
            last_seq: self.journal.next_seq() - 1,
        };
        let link = Link::open(device, &hello, self.journal.path(), self.acks(), config).unwrap();
        (link, host)
    }
}

const SLOW: LinkConfig = LinkConfig {
    ack_timeout: Duration::from_secs(60),
    max_backoff: Duration::from_secs(60),
};

/// ACK `sent`, then the results that come after those ACKs (a journal of two windows at most).
fn ack_all_twice(link: &mut Link<TTYPort>, host: &mut TTYPort, sent: &[u64]) {
    let ack = |host: &mut TTYPort, seqs: &[u64]| {
        let acks: String = seqs.iter().map(|s| format!("ACK {s}\n")).collect();
        say(host, acks.as_bytes());
    };
    ack(host, sent);
    link.poll().unwrap();
    let rest = seqs_of(&frames(host), "result");
    ack(host, &rest);
    link.poll().unwrap();
}

/// Every complete frame the host can read now; each must pass its CRC.
fn frames(host: &mut TTYPort) -> Vec<Value> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match host.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break, // timed out: nothing more for now
        }
    }
    let text = String::from_utf8(bytes).expect("frames are text");
    assert!(text.is_empty() || text.ends_with('\n'), "a partial frame: {text:?}");
    text.lines()
        .map(|l| serde_json::from_str(decode_line(l).unwrap_or_else(|| panic!("bad CRC: {l}"))).unwrap())
        .collect()
}

fn seqs_of(frames: &[Value], kind: &str) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == kind)
        .map(|f| f["seq"].as_u64().unwrap())
        .collect()
}

fn say(host: &mut TTYPort, text: &[u8]) {
    host.write_all(text).unwrap();
    host.flush().unwrap();
}

#[test]
fn hello_then_backlog_then_acks_out_of_order_survive_a_reopen() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(3);
    let (mut link, mut host) = rig.connect(SLOW);
    let got = frames(&mut host);
    assert_eq!(got[0]["type"], "hello");
    assert_eq!(got[0]["last_seq"], 3);
    assert_eq!(
        seqs_of(&got, "result"),
        vec![1, 2, 3],
        "unacknowledged results, in order"
    );

    say(&mut host, b"ACK 3\nACK 1\r\n");
    // the first line from the host is news once ("host seen" in the log): an open port alone
    // says nothing about a cable or a host
    assert_eq!(
        link.poll().unwrap(),
        [Event::HostSeen, Event::Acked(3), Event::Acked(1)]
    );
    assert_eq!(link.unacked(), 1);
    assert_eq!((link.acks().through, link.acks().above.len()), (1, 1));
    drop(link);

    // a reboot: only the result the host never confirmed comes again
    let (mut link, mut host) = rig.connect(SLOW);
    assert_eq!(seqs_of(&frames(&mut host), "result"), vec![2]);
    say(&mut host, b"ACK 2\n");
    link.poll().unwrap();
    assert_eq!((rig.acks().through, link.unacked()), (3, 0), "acks are on disk");
    drop(link);
    let (_link, mut host) = rig.connect(SLOW);
    assert!(seqs_of(&frames(&mut host), "result").is_empty());
}

#[test]
fn a_host_that_never_acks_gets_resends_with_growing_gaps() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(1);
    let config = LinkConfig {
        ack_timeout: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
    };
    let (mut link, mut host) = rig.connect(config);
    let start = Instant::now();
    let mut arrivals = Vec::new();
    while start.elapsed() < Duration::from_millis(1600) {
        link.poll().unwrap();
        for f in frames(&mut host) {
            if f["type"] == "result" {
                arrivals.push(start.elapsed());
            }
        }
    }
    // sent at 0, then after 100, 200, 400, 400... ms: 5 or 6 times in 1.6 s
    assert!((4..=7).contains(&arrivals.len()), "{arrivals:?}");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[1] > gaps[0], "backoff grows: {gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_millis(600)), "capped: {gaps:?}");
    assert_eq!(link.unacked(), 1);
}

#[test]
fn garbage_gets_error_frames_and_the_link_keeps_serving() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(2);
    let (mut link, mut host) = rig.connect(SLOW);
    frames(&mut host);
    say(&mut host, b"\xff\xfe\x00garbage\nFOO 1\nACK one\n");
    say(&mut host, &[b'A'; 200]);
    link.set_status(3, ServiceState::CaptureLost);
    say(&mut host, b"\nSTATUS\nTRIGGER\n");
    let events = link.poll().unwrap();
    assert_eq!(
        events,
        vec![Event::HostSeen, Event::Trigger],
        "a bad line proves a host too"
    );
    let got = frames(&mut host);
    let errors: Vec<&str> = got
        .iter()
        .filter(|f| f["type"] == "error")
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 4, "{got:?}");
    assert!(errors[0].contains("not text"), "{errors:?}");
    assert!(errors[1].contains("FOO"), "{errors:?}");
    assert!(errors[2].contains("not a sequence number"), "{errors:?}");
    assert!(errors[3].contains("longer than 64"), "{errors:?}");
    let status = got.iter().find(|f| f["type"] == "status").expect("STATUS answered");
    assert_eq!(
        (status["last_seq"].as_u64(), status["unacked"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (status["queue"].as_u64(), status["state"].as_str()),
        (Some(3), Some("capture-lost"))
    );
}

#[test]
fn nak_and_replay_come_from_the_journal() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(3);
    let (mut link, mut host) = rig.connect(SLOW);
    frames(&mut host);
    say(&mut host, b"ACK 1\nACK 2\nACK 3\nACK 4\nNAK 2\nREPLAY 2\nREPLAY 99\n");
    link.poll().unwrap();
    let got = frames(&mut host);
    assert_eq!(seqs_of(&got, "result"), vec![2, 2, 3], "NAK 2, then REPLAY 2 -> 2, 3");
    let errors: Vec<&Value> = got.iter().filter(|f| f["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "ACK 4 (never sent) and REPLAY 99: {got:?}");
    assert!(errors.iter().all(|e| e["reason"] == "unknown-seq"));
    assert!(!link.acks().is_acked(4), "an ACK ahead of the journal must not count");
    // replayed frames carry the journal's records unchanged (`v` included: the record's is
    // the protocol's), plus the frame's type
    let journaled = rig.journal.records_from(2).unwrap();
    let replayed: Vec<&Value> = got.iter().filter(|f| f["type"] == "result").skip(1).collect();
    for (frame, record) in replayed.iter().zip(&journaled) {
        let mut fields = (*frame).clone();
        let object = fields.as_object_mut().unwrap();
        object.remove("type");
        let expected: Value = serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
        assert_eq!(fields, expected);
    }
}

#[test]
fn a_host_dropping_the_line_mid_command_acknowledges_nothing() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(1);
    let (mut link, mut host) = rig.connect(SLOW);
    frames(&mut host);
    say(&mut host, b"ACK 1"); // no newline: the cable is pulled here
    link.poll().unwrap();
    drop(host);
    let down = (0..20).find_map(|_| link.poll().err());
    assert!(down.is_some(), "the link notices the host end is gone");
    drop(link);
    // the line comes back: the result is sent again, nothing was acknowledged
    let (_link, mut host) = rig.connect(SLOW);
    assert_eq!(seqs_of(&frames(&mut host), "result"), vec![1]);
    assert_eq!(rig.acks().through, 0);
}

#[test]
fn a_long_backlog_goes_out_a_window_at_a_time_as_the_host_acks() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(20);
    let (mut link, mut host) = rig.connect(SLOW);
    let got = frames(&mut host);
    assert_eq!(seqs_of(&got, "result"), (1..=8).collect::<Vec<_>>(), "the first window");
    // commands are answered at once; status counts the whole backlog
    say(&mut host, b"STATUS\n");
    link.poll().unwrap();
    let got = frames(&mut host);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["unacked"], 20);
    // each ACK makes room for the next result, in order
    say(&mut host, b"ACK 2\nACK 1\nACK 3\n");
    link.poll().unwrap();
    assert_eq!(seqs_of(&frames(&mut host), "result"), [9, 10, 11]);
    let rest: String = (4..=11).map(|s| format!("ACK {s}\n")).collect();
    say(&mut host, rest.as_bytes());
    link.poll().unwrap();
    assert_eq!(seqs_of(&frames(&mut host), "result"), (12..=19).collect::<Vec<_>>());
    say(&mut host, b"ACK 12\n");
    link.poll().unwrap();
    assert_eq!(seqs_of(&frames(&mut host), "result"), [20]);
    assert_eq!(link.unacked(), 8);
}

#[test]
fn a_host_that_stops_reading_does_not_bring_the_link_down() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(1);
    let fast = LinkConfig {
        ack_timeout: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
    };
    let (mut link, mut host) = rig.connect(fast);
    // the host reads nothing while ptxd talks far more than the pty holds
    let started = Instant::now();
    for _ in 0..400 {
        link.send_status().expect("a host that does not read is not a failure");
    }
    std::thread::sleep(Duration::from_millis(60));
    link.poll().expect("still up");
    assert!(started.elapsed() < Duration::from_secs(60));
    // the host reads again: everything it gets is whole frames, but for at most one torn line
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = host.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let bad = text.lines().filter(|l| decode_line(l).is_none()).count();
    let good = text.lines().filter(|l| decode_line(l).is_some()).count();
    assert!(bad <= 1, "{bad} damaged lines");
    assert!(good > 100, "{good} frames got through before the pty filled");
    // and the unacknowledged result is resent whole once there is room
    std::thread::sleep(Duration::from_millis(60));
    link.poll().unwrap();
    let got = frames(&mut host);
    assert!(seqs_of(&got, "result").contains(&1), "{got:?}");
}

#[test]
fn a_flood_of_bad_lines_gets_a_bounded_answer_and_commands_still_work() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(1);
    let (mut link, mut host) = rig.connect(SLOW);
    frames(&mut host);
    let flood: Vec<u8> = (0..1000).flat_map(|i| format!("FOO {i}\n").into_bytes()).collect();
    say(&mut host, &flood);
    say(&mut host, b"STATUS\n");
    let mut got = Vec::new();
    for _ in 0..10 {
        link.poll().unwrap();
        got.extend(frames(&mut host));
    }
    let errors: Vec<&str> = got
        .iter()
        .filter(|f| f["type"] == "error")
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    // a poll reads at most 16 KiB: the flood can take two, each answering 8 lines and
    // counting the rest in one more frame
    assert!(
        errors.len() <= 2 * (ptxd::sink::serial::MAX_BAD_COMMAND_ERRORS + 1),
        "{errors:?}"
    );
    let counted: usize = errors
        .iter()
        .filter_map(|e| {
            e.split_once(" more bad line(s)")
                .map(|(n, _)| n.parse::<usize>().unwrap())
        })
        .sum();
    let answered = errors.iter().filter(|e| e.contains("FOO")).count();
    assert_eq!(
        answered + counted,
        1000,
        "every bad line answered or counted: {errors:?}"
    );
    assert!(
        got.iter().any(|f| f["type"] == "status"),
        "STATUS answered after the flood"
    );
}

#[test]
fn the_backlog_is_read_from_the_journal_past_a_corrupt_line() {
    let _lock = common::lock_ptys();
    let rig = Rig::new(12);
    // a flipped bit in record 10 (a disk fault): it can never be sent
    let path = rig.journal.path().to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    let tenth = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(8).unwrap().0 + 10;
    bytes[tenth] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let (mut link, mut host) = rig.connect(SLOW);
    assert_eq!(seqs_of(&frames(&mut host), "result"), (1..=8).collect::<Vec<_>>());
    let acks: String = (1..=8).map(|s| format!("ACK {s}\n")).collect();
    say(&mut host, acks.as_bytes());
    link.poll().unwrap();
    assert_eq!(seqs_of(&frames(&mut host), "result"), [9, 11, 12]);
    assert_eq!(link.unacked(), 3, "the lost line is no longer counted once passed");
    // a result journaled now goes out at once, from memory
    let mut journal = Journal::open(&path).unwrap();
    let record = journal.append(common::record()).unwrap();
    link.send_result(&record).unwrap();
    assert_eq!(seqs_of(&frames(&mut host), "result"), [13]);
    assert_eq!(link.unacked(), 4);
    // the host's unbroken run of ACKs passes the lost record: retention can go past it
    say(&mut host, b"ACK 9\nACK 11\nACK 12\nACK 13\n");
    link.poll().unwrap();
    assert_eq!(link.acks().through, 13);
    assert!(link.acks().above.is_empty());
    assert_eq!(rig.acks().through, 13, "kept on disk");
    assert_eq!(link.unacked(), 0);
}

#[test]
fn a_host_configured_after_retention_removed_segments_gets_the_kept_ones_and_its_run_passes_the_rest() {
    let _lock = common::lock_ptys();
    let (rig, sealed) = Rig::segmented();
    assert!(sealed.len() >= 2, "{sealed:?}");
    // retention removed the oldest segment while no serial host was configured
    std::fs::remove_file(&sealed[0].path).unwrap();
    let kept = sealed[1].first;
    let (mut link, mut host) = rig.connect(SLOW);
    let sent = seqs_of(&frames(&mut host), "result");
    assert_eq!(sent, (kept..=10).take(8).collect::<Vec<_>>());
    ack_all_twice(&mut link, &mut host, &sent);
    assert_eq!(link.acks().through, 10, "the removed seqs counted as taken");
    assert_eq!(rig.acks().through, 10);
    assert_eq!(link.unacked(), 0);
}

/// Seqs missing across two files are not passed over: the live file may have been sealed
/// while the link listed the files, and its records then come at the next reopen.
#[test]
fn a_gap_between_two_files_is_not_counted_as_taken() {
    let _lock = common::lock_ptys();
    let (rig, sealed) = Rig::segmented();
    assert!(sealed.len() >= 3, "{sealed:?}");
    // a middle segment missing (as if read past while it was being made)
    std::fs::remove_file(&sealed[1].path).unwrap();
    let missing = sealed[1].first..sealed[2].first;
    let (mut link, mut host) = rig.connect(SLOW);
    let sent = seqs_of(&frames(&mut host), "result");
    assert!(sent.iter().all(|s| !missing.contains(s)), "{sent:?}");
    ack_all_twice(&mut link, &mut host, &sent);
    assert_eq!(link.acks().through, missing.start - 1, "the run stops below the gap");
    assert_eq!(rig.acks().through, missing.start - 1);
}
