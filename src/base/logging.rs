//! A `log` backend for a service: one line per message on stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with the syslog priority in the
//! `<N>` form that journald reads, and no timestamp (journald adds its own). In a terminal
//! the line starts with a UTC timestamp and the level instead.
//!
//! [`Failing`] is the one rule for things that fail over and over (a reconnect loop, a
//! display, a sink): log the first failure of a run and the recovery, not every retry.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journald: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // tract and friends chatter at info level (CPU probing): only their warnings pass
        let own = metadata.target().starts_with("ptxd");
        metadata.level() <= log::max_level() && (own || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journald {
            format!("<{}>{}", priority(record.level()), record.args())
        } else {
            format!(
                "{} {:5} {}",
                crate::base::files::now_rfc3339(),
                record.level(),
                record.args()
            )
        };
        eprintln!("{line}");
    }

    fn flush(&self) {}
}

/// syslog(3) priorities, as sd-daemon(3) prefixes.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Install the logger (once; later calls are ignored). `verbose` adds debug messages.
pub fn init(verbose: bool) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // leaked once: the logger lives as long as the process
    if log::set_logger(Box::leak(Box::new(Logger { journald }))).is_ok() {
        log::set_max_level(if verbose { LevelFilter::Debug } else { LevelFilter::Info });
    }
}

/// Whether something is failing now, so that a run of failures is logged twice (when it
/// starts and when it ends) rather than once per retry or per image.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Failing(bool);

impl Failing {
    /// A failure. True when it starts a run: log it then.
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.0, true)
    }

    /// A success. True when it ends a run of failures: log the recovery then.
    pub fn worked(&mut self) -> bool {
        std::mem::replace(&mut self.0, false)
    }

    pub fn is_failing(self) -> bool {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Failing;

    #[test]
    fn a_run_of_failures_is_reported_at_its_start_and_its_end() {
        let mut f = Failing::default();
        assert!(!f.worked(), "no run to end");
        assert!(f.failed() && f.is_failing());
        assert!(!f.failed(), "the rest of the run is quiet");
        assert!(f.worked() && !f.is_failing());
        assert!(f.failed(), "a new run");
    }
}
