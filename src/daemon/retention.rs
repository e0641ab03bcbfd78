//! The sweeper: [`crate::record::retention`] run at start and every `sweep_minutes` on the
//! folders of analyzed inputs and results, keeping what the PACS still owes, and on the
//! journal's sealed segments, keeping what the serial host or the PACS has yet to take; one
//! log line per sweep that removed something or could not reach the free-space floor.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::base::worker::{nap, Worker};
use crate::config::Config;
use crate::record::retention::{Retention, DAY};
use crate::sink::{self, pacs::Unconfirmed};

/// How long a day lasts for the sweeper: a day, or `PTXD_TEST_DAY_MS` milliseconds where
/// that is set, for the test that drives a year of results through a daemon in minutes
/// (`tests/it/year.rs`): ages and sweeps scale, against the real clock and real file times.
/// (That test also sets `PTXD_TEST_SWEEP_STEP_MS`, a pause after each removal, to cut the
/// power in the middle of a sweep.)
fn day() -> Duration {
    std::env::var("PTXD_TEST_DAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .filter(|&ms| ms > 0)
        .map_or(DAY, Duration::from_millis)
}

/// Start the sweeper thread.
pub(super) fn start(config: &Config) -> io::Result<Worker> {
    let day = day();
    let mut retention = Retention::of(config, day);
    if let Some(ms) = std::env::var("PTXD_TEST_SWEEP_STEP_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        retention = retention.pacing(Duration::from_millis(ms));
    }
    let period = day * config.retention.sweep_minutes.get() / (24 * 60);
    let config = config.clone();
    Worker::spawn("retention", move |stop| {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // what the PACS owes, as its cursor says at this sweep
            let unconfirmed = Unconfirmed::now(&config);
            let owed = |file: &Path| unconfirmed.as_ref().is_some_and(|u| u.holds(file));
            let now = SystemTime::now();
            let swept = retention.sweep(now, &owed).and_then(|swept| {
                let segments = retention.sweep_journal(now, sink::delivered_through(&config))?;
                Ok((swept, segments))
            });
            match swept {
                Ok((swept, (segments, segment_bytes))) => {
                    if swept.removed + segments > 0 {
                        log::info!(
                            "retention: removed {} file(s) and {segments} journal segment(s), {:.1} MB ({} past their age kept: the PACS has yet to confirm them)",
                            swept.removed,
                            (swept.bytes + segment_bytes) as f64 / 1e6,
                            swept.owed
                        );
                    }
                    if let Some((free, floor)) = swept.short {
                        log::warn!(
                            "retention: {:.1} MB free, under the floor of {:.1} MB, with nothing left here that may go; free space by hand (`ptxd doctor` shows what is kept), or check the PACS link if results wait for it",
                            free as f64 / 1e6,
                            floor as f64 / 1e6
                        );
                    }
                }
                Err(e) => log::warn!(
                    "retention: the sweep stopped: {e}; it runs again in {} min",
                    period.as_secs() / 60
                ),
            }
            nap(period, stop);
        }
    })
}
