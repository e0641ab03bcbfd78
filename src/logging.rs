//! A `log` backend for a service: one line per message on stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with the syslog priority in the
//! `<N>` form that journald reads, and no timestamp (journald adds its own). In a terminal
//! the line starts with a UTC timestamp and the level instead.

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
                crate::journal::now_rfc3339(),
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
