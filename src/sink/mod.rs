//! Where a result goes once it is journaled: the screen, the alert lines and the host link,
//! each a [`Sink`] handed the result by the daemon; and the PACS outbox and the MQTT uplink,
//! which read the journal themselves (from a cursor of their own, so a restart resends what
//! they were not confirmed).
//!
//! The daemon turns one input into one outcome, appends its record to the journal, and only
//! then hands it to the sinks, in a fixed order (alert, screen, link). Two decisions:
//! - **The journal is the only thing a result waits for.** A sink that fails (a display
//!   unplugged, a link thread gone) or even panics is logged and skipped; the others still
//!   get the result, and the journal already holds it, so the link replays it later.
//! - **Failures are logged once per run of them.** A dead display would otherwise write a line
//!   per image; [`Health`] logs the first failure and the recovery.
//!
//! The overlay and mask files are written *before* the journal, not as sinks: the record
//! names them, and a record must never point at a file that was not written.

pub mod alert;
pub mod mqtt;
pub mod pacs;
pub mod screen;
pub mod serial;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use thiserror::Error;

use crate::analysis::Analysis;
use crate::base::logging::Failing;
use crate::base::outcome::panic_text;
use crate::config::Config;
use crate::record::journal::Record;

/// The seq through which every configured output has every result: the serial host's
/// unbroken run of ACKs, the PACS's cursor and the MQTT broker's. A state file that cannot be read gives 0
/// (keep everything), as does an output that has taken nothing yet.
pub fn delivered_through(config: &Config) -> u64 {
    let mut through = u64::MAX;
    if config.serial.is_some() {
        through = through.min(serial::AckState::open(&config.acks_file()).map_or(0, |a| a.through));
    }
    if config.pacs.is_some() {
        through = through.min(pacs::Cursor::load(&config.pacs_cursor()).map_or(0, |c| c.stored_through));
    }
    if config.mqtt.is_some() {
        through = through.min(mqtt::Cursor::load(&config.mqtt_cursor()).map_or(0, |c| c.published_through));
    }
    through
}

/// One journaled result, as the sinks see it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// As journaled: with its seq and time.
    pub record: &'a Record,
    /// The analysis behind it, for drawing; None for an input that could not be analyzed.
    pub analysis: Option<&'a Analysis>,
    /// The input's file name, for people.
    pub input: &'a str,
}

/// A sink could not take a result; the message says what to check.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// An output a journaled result is handed to.
pub trait Sink {
    /// For log lines: "screen", "alert", "serial link".
    fn name(&self) -> &'static str;
    /// Take one journaled result. Must not block for long: the next image waits.
    fn deliver(&mut self, delivery: &Delivery<'_>) -> Result<(), SinkError>;
}

/// How each sink did last time, so that a run of failures is logged once.
#[derive(Debug, Default)]
pub struct Health {
    sinks: BTreeMap<&'static str, Failing>,
}

impl Health {
    /// Note how `sink` did; log a failure when it starts failing and when it recovers.
    pub fn note(&mut self, sink: &'static str, result: Result<(), SinkError>) {
        let failing = self.sinks.entry(sink).or_default();
        match result {
            Ok(()) => {
                if failing.worked() {
                    log::info!("{sink}: working again");
                }
            }
            Err(e) => {
                if failing.failed() {
                    log::error!(
                        "{sink}: {e}; results are still journaled (further failures are not logged until it recovers)"
                    );
                }
            }
        }
    }

    /// The sinks failing now.
    pub fn failing(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sinks.iter().filter(|(_, f)| f.is_failing()).map(|(&name, _)| name)
    }
}

/// Hand `delivery` to each sink in order. A sink that fails or panics is noted in `health`
/// and the others still get the result.
pub fn deliver(sinks: &mut [&mut dyn Sink], delivery: &Delivery<'_>, health: &mut Health) {
    for sink in sinks.iter_mut() {
        let name = sink.name();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| sink.deliver(delivery)))
            .unwrap_or_else(|panic| Err(SinkError(format!("internal error: {}", panic_text(&*panic)))));
        health.note(name, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::outcome::{ErrorKind, Failure};
    use crate::model::infer::ModelVersions;

    /// Records what it was given; fails or panics on demand.
    struct Probe {
        name: &'static str,
        got: Vec<u64>,
        fail: bool,
        panic: bool,
    }

    impl Probe {
        fn new(name: &'static str) -> Probe {
            Probe {
                name,
                got: Vec::new(),
                fail: false,
                panic: false,
            }
        }
    }

    impl Sink for Probe {
        fn name(&self) -> &'static str {
            self.name
        }
        fn deliver(&mut self, d: &Delivery<'_>) -> Result<(), SinkError> {
            if self.panic {
                panic!("{} exploded", self.name);
            }
            if self.fail {
                return Err(SinkError("unplugged".into()));
            }
            self.got.push(d.record.seq);
            Ok(())
        }
    }

    fn record(seq: u64) -> Record {
        let failure = Failure {
            kind: ErrorKind::Decode,
            message: "x.png: truncated".into(),
        };
        let mut r = Record::failure("watch:x.png".into(), None, ModelVersions::default(), &failure);
        r.seq = seq;
        r
    }

    #[test]
    fn a_failing_or_panicking_sink_does_not_stop_the_others() {
        let (mut a, mut b, mut c) = (Probe::new("a"), Probe::new("b"), Probe::new("c"));
        b.fail = true;
        c.panic = true;
        let mut health = Health::default();
        let mut d = Probe::new("d");
        for seq in [1, 2] {
            let r = record(seq);
            let delivery = Delivery {
                record: &r,
                analysis: None,
                input: "x.png",
            };
            deliver(&mut [&mut a, &mut b, &mut c, &mut d], &delivery, &mut health);
        }
        assert_eq!(a.got, [1, 2]);
        assert_eq!(
            d.got,
            [1, 2],
            "the sink after a failing and a panicking one still gets every result"
        );
        assert_eq!(health.failing().collect::<Vec<_>>(), ["b", "c"]);
        b.fail = false;
        let r = record(3);
        let delivery = Delivery {
            record: &r,
            analysis: None,
            input: "x.png",
        };
        deliver(&mut [&mut b], &delivery, &mut health);
        assert_eq!(b.got, [3]);
        assert_eq!(
            health.failing().collect::<Vec<_>>(),
            ["c"],
            "a recovered sink is no longer failing"
        );
    }
}
