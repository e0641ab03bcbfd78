//! The sweeper: [`crate::record::retention`] run at start and every `sweep_minutes` on the
//! folders of analyzed inputs and results, keeping what the PACS still owes, and one log
//! line per sweep that removed something or could not reach the free-space floor.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::base::worker::{nap, Worker};
use crate::config::Config;
use crate::record::retention::Retention;
use crate::sink::pacs::Unconfirmed;

/// Start the sweeper thread.
pub(super) fn start(config: &Config) -> io::Result<Worker> {
    let retention = Retention::of(config);
    let period = Duration::from_secs(u64::from(config.retention.sweep_minutes.get()) * 60);
    let config = config.clone();
    Worker::spawn("retention", move |stop| {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // what the PACS owes, as its cursor says at this sweep
            let unconfirmed = Unconfirmed::now(&config);
            let owed = |file: &Path| unconfirmed.as_ref().is_some_and(|u| u.holds(file));
            match retention.sweep(SystemTime::now(), &owed) {
                Ok(swept) => {
                    if swept.removed > 0 {
                        log::info!(
                            "retention: removed {} file(s), {:.1} MB ({} past their age kept: the PACS has yet to confirm them)",
                            swept.removed,
                            swept.bytes as f64 / 1e6,
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
