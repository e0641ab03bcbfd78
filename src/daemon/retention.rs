//! The sweeper: [`crate::record::retention`] run at start and every `sweep_minutes` on the
//! folders of analyzed inputs and results, keeping what the PACS still owes, and one log
//! line per sweep that removed something or could not reach the free-space floor.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::base::worker::{nap, Worker};
use crate::config::Config;
use crate::record::retention::{result_seq, Folder, Holds, Retention};
use crate::sink::pacs::Cursor;

/// Start the sweeper thread.
pub(super) fn start(config: &Config) -> io::Result<Worker> {
    let retention = retention(config);
    let period = Duration::from_secs(u64::from(config.retention.sweep_minutes.get()) * 60);
    // the PACS has a result's DICOM objects once its cursor is past their seq; until then
    // (or while the cursor cannot be read) they stay, whatever their age
    let owed_to_pacs = match (&config.pacs, &config.output.dicom_dir) {
        (Some(_), Some(dir)) => Some((dir.clone(), config.pacs_cursor())),
        _ => None,
    };
    Worker::spawn("retention", move |stop| {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let cursor = owed_to_pacs.as_ref().map(|(dir, path)| (dir, Cursor::load(path).ok()));
            let owed = |file: &Path| match &cursor {
                Some((dir, cursor)) if file.starts_with(dir) => match (cursor, result_seq(file)) {
                    (Some(c), Some(seq)) => seq > c.stored_through || c.refused.iter().any(|r| r.seq == seq),
                    // a cursor that cannot be read: every DICOM result stays
                    _ => true,
                },
                _ => false,
            };
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
                            "retention: {:.1} MB free, under the floor of {:.1} MB, and nothing left that may go ({} file(s) owed to the PACS); free space by hand or check the PACS link",
                            free as f64 / 1e6,
                            floor as f64 / 1e6,
                            swept.owed
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

/// The folders ptxd writes inputs and results to, and the state it must never touch.
fn retention(config: &Config) -> Retention {
    let mut folders = vec![
        Folder {
            path: config.done_dir().into(),
            holds: Holds::Inputs,
        },
        Folder {
            path: config.failed_dir().into(),
            holds: Holds::Inputs,
        },
        Folder {
            path: config.output.overlay_dir.clone(),
            holds: Holds::Results,
        },
    ];
    for dir in [&config.output.mask_dir, &config.output.dicom_dir]
        .into_iter()
        .flatten()
    {
        folders.push(Folder {
            path: dir.clone(),
            holds: Holds::Results,
        });
    }
    let journal = &config.journal.path;
    let mut dropped = journal.clone().into_os_string();
    dropped.push(".dropped");
    let protected = vec![
        journal.clone(),
        dropped.into(),
        config.acks_file(),
        config.pacs_cursor(),
        config.variant_cache(),
    ];
    let keep = Duration::from_secs(u64::from(config.retention.keep_days.get()) * 86_400);
    Retention::new(folders, keep, config.retention.min_free, protected)
}
