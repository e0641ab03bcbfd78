//! Retention: what ptxd writes is not kept forever. A clinic sending 50 ten-megabyte films a
//! day fills a 32 GB card in about two months; then every later film would wait behind the
//! disk-full stall until somebody came. So a sweep removes, from the folders of analyzed
//! inputs and results, the files older than `keep_days`, and then, while the disk's free
//! space is under its floor, the oldest ones first.
//!
//! What a sweep never removes:
//! - a file something still owes: the caller says which (the daemon: a DICOM result the
//!   PACS has not confirmed), whatever its age;
//! - anything outside the swept folders (the watch folder's waiting inputs, the journal and
//!   the state beside it), and in a results folder, any file whose name is not a result's
//!   (`<seq>-<name>`): a results folder set to a shared directory loses only results;
//! - the paths it is told to protect (the journal and its companions), wherever they are.
//!
//! The journal itself goes by whole sealed segments ([`Retention::sweep_journal`]): one
//! last written before the horizon, all of whose records every output has.
//!
//! A sweep reports counts and bytes; the caller logs one line per sweep, never one a file.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{Config, MinFree};
use crate::record::journal;

/// A day.
pub const DAY: Duration = Duration::from_secs(86_400);

/// What a folder holds, which decides which of its files a sweep may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Analyzed inputs (`done/`, `failed/`): every file in it is ptxd's.
    Inputs,
    /// Result files: only names that start with a result's seq (`00000012-...`).
    Results,
}

/// A folder to sweep.
#[derive(Debug, Clone)]
pub struct Folder {
    pub path: PathBuf,
    pub holds: Holds,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    /// Files removed, and their bytes.
    pub removed: usize,
    pub bytes: u64,
    /// Files past their age that were kept because something still owes them.
    pub owed: usize,
    /// A disk still under its floor after the sweep (everything left there is owed or not
    /// ptxd's): its free bytes and the floor's.
    pub short: Option<(u64, u64)>,
}

/// The sweep's settings and the folders it may take from.
#[derive(Debug, Clone)]
pub struct Retention {
    folders: Vec<Folder>,
    keep: Duration,
    floor: MinFree,
    protected: BTreeSet<PathBuf>,
    journal: Option<PathBuf>,
    /// A pause after each removal: none, but for a test that cuts the power mid-sweep.
    pace: Duration,
}

struct Candidate {
    path: PathBuf,
    modified: SystemTime,
    bytes: u64,
    device: u64,
}

impl Retention {
    /// The sweep `config` asks for: the folders ptxd writes inputs and results to, the
    /// journal's segments, and the state it must never touch. `day` is how long a day of
    /// `keep_days` lasts: [`DAY`], but for a test that runs a year in minutes.
    pub fn of(config: &Config, day: Duration) -> Retention {
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
        let keep = day * config.retention.keep_days.get();
        Retention {
            journal: Some(journal.clone()),
            ..Retention::new(folders, keep, config.retention.min_free, protected)
        }
    }

    /// Sweep `folders`, keeping files `keep` long and `floor` free; never remove `protected`.
    pub fn new(folders: Vec<Folder>, keep: Duration, floor: MinFree, protected: Vec<PathBuf>) -> Retention {
        Retention {
            folders,
            keep,
            floor,
            protected: protected.into_iter().collect(),
            journal: None,
            pace: Duration::ZERO,
        }
    }

    /// Pause this long after each removal (a sweep is otherwise over in milliseconds): for
    /// the test that cuts the power in the middle of one.
    pub fn pacing(self, pace: Duration) -> Retention {
        Retention { pace, ..self }
    }

    /// Also remove the sealed segments of the journal at `path` ([`Retention::sweep_journal`]).
    pub fn with_journal(self, path: &Path) -> Retention {
        Retention {
            journal: Some(path.into()),
            ..self
        }
    }

    /// Remove the journal's sealed segments last written before the horizon whose every
    /// record is at or below `delivered` (the seq through which every output has all
    /// results). A segment's last seq is the next file's first less one, so the newest
    /// segment waits until the live file holds a record. Returns the segments and bytes.
    pub fn sweep_journal(&self, now: SystemTime, delivered: u64) -> io::Result<(usize, u64)> {
        let Some(journal) = &self.journal else {
            return Ok((0, 0));
        };
        let horizon = now.checked_sub(self.keep).unwrap_or(SystemTime::UNIX_EPOCH);
        let segments = journal::segments(journal)?;
        let live_first = journal::first_seq(journal)?;
        let nexts = segments.iter().skip(1).map(|s| Some(s.first)).chain([live_first]);
        let (mut removed, mut bytes) = (0, 0);
        for (segment, next_first) in segments.iter().zip(nexts) {
            let Some(last) = next_first.map(|f| f.saturating_sub(1)) else {
                break;
            };
            // oldest first: once one must stay, so do the later ones (one journal, in order)
            let Ok(meta) = std::fs::metadata(&segment.path) else {
                continue;
            };
            if last > delivered || meta.modified()? >= horizon {
                break;
            }
            if std::fs::remove_file(&segment.path).is_ok() {
                removed += 1;
                bytes += meta.len();
            }
        }
        Ok((removed, bytes))
    }

    /// Remove what is past its age, then the oldest until each disk has its floor free.
    /// `owed` says which files must stay whatever their age. A file that cannot be removed
    /// is left (and counted nowhere): the next sweep tries again.
    pub fn sweep(&self, now: SystemTime, owed: &dyn Fn(&Path) -> bool) -> io::Result<Swept> {
        let mut swept = Swept::default();
        let mut candidates = Vec::new();
        for folder in &self.folders {
            candidates.extend(self.files(folder)?);
        }
        // oldest first: the age rule and the floor both take the oldest before the newer
        candidates.sort_by_key(|c| c.modified);
        let horizon = now.checked_sub(self.keep).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut left = Vec::new();
        for c in candidates {
            if owed(&c.path) {
                swept.owed += usize::from(c.modified < horizon);
            } else if c.modified < horizon {
                self.remove(&c, &mut swept);
            } else {
                left.push(c);
            }
        }
        // the floor, disk by disk (the results may be on another disk than the inputs)
        let mut by_device: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
        for c in left {
            by_device.entry(c.device).or_default().push(c);
        }
        let disks: BTreeMap<u64, &Path> = self
            .folders
            .iter()
            .filter_map(|f| Some((device(&f.path)?, &*f.path)))
            .collect();
        for (dev, path) in disks {
            let Some(disk) = disk_space(path) else { continue };
            let floor = self.floor_of(disk);
            let mut free = disk.free;
            for c in by_device.remove(&dev).unwrap_or_default() {
                if free >= floor {
                    break;
                }
                if self.remove(&c, &mut swept) {
                    free += c.bytes;
                }
            }
            // what the filesystem says, not the sum: blocks, and other writers
            let free = disk_space(path).map_or(free, |d| d.free);
            if free < floor {
                swept.short = Some((free, floor));
            }
        }
        Ok(swept)
    }

    fn remove(&self, c: &Candidate, swept: &mut Swept) -> bool {
        let removed = std::fs::remove_file(&c.path).is_ok();
        if removed {
            swept.removed += 1;
            swept.bytes += c.bytes;
            std::thread::sleep(self.pace);
        }
        removed
    }

    /// What each disk of the swept folders holds of them, for `doctor`: its space, the
    /// files a sweep may take there, the oldest, the last week's writing and what is owed.
    pub fn survey(&self, now: SystemTime, owed: &dyn Fn(&Path) -> bool) -> io::Result<Vec<DiskUse>> {
        let week_ago = now
            .checked_sub(Duration::from_secs(7 * 86_400))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut disks: BTreeMap<u64, DiskUse> = BTreeMap::new();
        for folder in &self.folders {
            let (Some(dev), Some(space)) = (device(&folder.path), disk_space(&folder.path)) else {
                continue;
            };
            let floor = self.floor_of(space);
            let disk = disks.entry(dev).or_insert_with(|| DiskUse {
                path: folder.path.clone(),
                space,
                floor,
                files: 0,
                bytes: 0,
                oldest: None,
                last_week: 0,
                owed_bytes: 0,
            });
            for c in self.files(folder)? {
                disk.files += 1;
                disk.bytes += c.bytes;
                disk.oldest = Some(disk.oldest.map_or(c.modified, |o| o.min(c.modified)));
                if c.modified >= week_ago {
                    disk.last_week += c.bytes;
                }
                if owed(&c.path) {
                    disk.owed_bytes += c.bytes;
                }
            }
        }
        Ok(disks.into_values().collect())
    }

    fn floor_of(&self, disk: DiskSpace) -> u64 {
        match self.floor {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (disk.total as f64 * p / 100.0) as u64,
        }
    }

    /// The files of `folder` a sweep may take.
    fn files(&self, folder: &Folder) -> io::Result<Vec<Candidate>> {
        let entries = match std::fs::read_dir(&folder.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.as_bytes();
            // a temporary file (being written durably) or a hidden one is not a result yet
            let ours = !name.starts_with(b".")
                && match folder.holds {
                    Holds::Inputs => true,
                    Holds::Results => is_result_name(name),
                };
            if !ours || self.protected.contains(&path) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            files.push(Candidate {
                modified: meta.modified()?,
                bytes: meta.len(),
                device: meta.dev(),
                path,
            });
        }
        Ok(files)
    }
}

/// `<digits>-<more>`: the names ptxd gives a result's files (`00000012-chest.png`,
/// `12-chest.sr.dcm`).
fn is_result_name(name: &[u8]) -> bool {
    let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && name.get(digits) == Some(&b'-') && name.len() > digits + 1
}

/// The seq a result file's name starts with.
pub fn result_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let (seq, _) = name.split_once('-')?;
    seq.parse().ok()
}

fn device(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// One disk's share of the swept folders ([`Retention::survey`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskUse {
    /// A swept folder on that disk, to name it by.
    pub path: PathBuf,
    pub space: DiskSpace,
    /// The free space the sweep keeps there.
    pub floor: u64,
    /// The files a sweep may take there, their bytes, and the oldest one's date.
    pub files: usize,
    pub bytes: u64,
    pub oldest: Option<SystemTime>,
    /// Bytes of those written in the last 7 days.
    pub last_week: u64,
    /// Bytes of those something still owes (kept whatever their age).
    pub owed_bytes: u64,
}

impl DiskUse {
    /// Days until the free space reaches the floor (from then on the oldest go) at the last
    /// week's rate; None when nothing was written that week.
    pub fn days_left(&self) -> Option<f64> {
        let per_day = self.last_week as f64 / 7.0;
        (per_day > 0.0).then(|| self.space.free.saturating_sub(self.floor) as f64 / per_day)
    }
}

/// A filesystem's size and the space an unprivileged writer has left on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSpace {
    pub total: u64,
    pub free: u64,
}

/// The disk `path` is on (statvfs); None when it cannot be asked.
pub fn disk_space(path: &Path) -> Option<DiskSpace> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid C string and stat a buffer statvfs fills on success.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    // u64 here; u32 on 32-bit targets
    #[allow(clippy::unnecessary_cast)]
    let (block, blocks, available) = (stat.f_frsize as u64, stat.f_blocks as u64, stat.f_bavail as u64);
    Some(DiskSpace {
        total: blocks * block,
        free: available * block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: usize, age_days: u64, now: SystemTime) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![7u8; bytes]).unwrap();
        let when = now - Duration::from_secs(age_days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        path
    }

    /// A sweep of one results folder, keeping 30 days and `floor` free.
    fn results_folder(path: &Path, floor: MinFree) -> Retention {
        let folder = Folder {
            path: path.into(),
            holds: Holds::Results,
        };
        Retention::new(vec![folder], Duration::from_secs(30 * 86_400), floor, Vec::new())
    }

    #[test]
    fn old_files_go_unless_owed_and_only_results_from_a_results_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (done, results) = (dir.path().join("done"), dir.path().join("overlays"));
        std::fs::create_dir_all(&done).unwrap();
        std::fs::create_dir_all(&results).unwrap();
        let now = SystemTime::now();
        let old_input = file(&done, "chest.dcm", 100, 40, now);
        let new_input = file(&done, "today.dcm", 100, 1, now);
        let old_result = file(&results, "00000001-chest.png", 50, 40, now);
        let owed_result = file(&results, "00000002-chest.sr.dcm", 50, 40, now);
        let not_a_result = file(&results, "journal.log", 50, 400, now);
        let temporary = file(&done, ".part-x", 50, 400, now);
        let protected = file(&done, "acks.json", 10, 400, now);
        let retention = Retention::new(
            vec![
                Folder {
                    path: done.clone(),
                    holds: Holds::Inputs,
                },
                Folder {
                    path: results.clone(),
                    holds: Holds::Results,
                },
            ],
            Duration::from_secs(30 * 86_400),
            MinFree::Bytes(0),
            vec![protected.clone()],
        );
        let owed = |p: &Path| result_seq(p) == Some(2);
        let swept = retention.sweep(now, &owed).unwrap();
        assert_eq!((swept.removed, swept.bytes, swept.owed), (2, 150, 1));
        assert_eq!(swept.short, None);
        assert!(!old_input.exists() && !old_result.exists());
        for kept in [&new_input, &owed_result, &not_a_result, &temporary, &protected] {
            assert!(kept.exists(), "{}", kept.display());
        }
        // nothing left to take: a second sweep removes nothing twice
        assert_eq!(retention.sweep(now, &owed).unwrap().removed, 0);
    }

    #[test]
    fn under_the_floor_the_oldest_go_first_and_what_is_owed_stays() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let names = ["00000001-a.png", "00000002-b.png", "00000003-c.png"];
        let paths: Vec<PathBuf> = names
            .iter()
            .zip([3, 2, 1])
            .map(|(n, age)| file(dir.path(), n, 10, age, now))
            .collect();
        let free = disk_space(dir.path()).unwrap().free;
        // a floor just out of reach: every file not owed goes, oldest first, and it says so
        let retention = results_folder(dir.path(), MinFree::Bytes(free + (1 << 40)));
        let owed = |p: &Path| result_seq(p) == Some(1);
        let swept = retention.sweep(now, &owed).unwrap();
        assert_eq!(swept.removed, 2);
        assert!(paths[0].exists(), "owed: kept although the oldest");
        assert!(!paths[1].exists() && !paths[2].exists());
        assert!(swept.short.is_some(), "still under the floor: said");
        // a floor already met removes nothing that is young
        let young = file(dir.path(), "00000004-d.png", 10, 1, now);
        let met = results_folder(dir.path(), MinFree::Percent(0.0));
        assert_eq!(met.sweep(now, &|_| false).unwrap(), Swept::default());
        assert!(young.exists());
    }

    #[test]
    fn a_survey_counts_the_files_the_oldest_the_last_week_and_what_is_owed() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        file(dir.path(), "00000001-a.png", 100, 20, now);
        file(dir.path(), "00000002-b.png", 30, 3, now);
        file(dir.path(), "notes.txt", 1000, 1, now);
        let retention = results_folder(dir.path(), MinFree::Bytes(0));
        let owed = |p: &Path| result_seq(p) == Some(2);
        let [disk] = &retention.survey(now, &owed).unwrap()[..] else {
            panic!("one disk")
        };
        assert_eq!(
            (disk.files, disk.bytes, disk.last_week, disk.owed_bytes),
            (2, 130, 30, 30)
        );
        let oldest = now.duration_since(disk.oldest.unwrap()).unwrap().as_secs();
        assert!(oldest.abs_diff(20 * 86_400) < 5, "{oldest}");
        let days = disk.days_left().unwrap();
        assert!((days - disk.space.free as f64 / (30.0 / 7.0)).abs() < 1.0, "{days}");
    }

    #[test]
    fn journal_segments_go_oldest_first_once_past_their_age_and_delivered() {
        use crate::analysis::findings::Verdict;
        use crate::record::journal::{segments, Journal, Record};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        // one record a segment: 1 to 4 sealed, 5 live
        let mut journal = Journal::open(&path).unwrap().rotate_at(1);
        for i in 0..5 {
            let record = Record::new(format!("watch:{i}.png"), None, Default::default(), Verdict::Negative);
            journal.append(record).unwrap();
        }
        let now = SystemTime::now();
        let sealed = segments(&path).unwrap();
        assert_eq!(sealed.iter().map(|s| s.first).collect::<Vec<_>>(), [1, 2, 3, 4]);
        for s in &sealed[..3] {
            let file = std::fs::File::options().write(true).open(&s.path).unwrap();
            file.set_modified(now - Duration::from_secs(40 * 86_400)).unwrap();
        }
        let retention = results_folder(&dir.path().join("overlays"), MinFree::Bytes(0)).with_journal(&path);
        let firsts = || segments(&path).unwrap().iter().map(|s| s.first).collect::<Vec<_>>();
        // the outputs have taken result 1 only: segment 1 alone holds nothing owed
        assert_eq!(retention.sweep_journal(now, 1).unwrap().0, 1);
        assert_eq!(firsts(), [2, 3, 4]);
        // everything taken: the old ones go, the young one stays, and so does the live file
        let (removed, bytes) = retention.sweep_journal(now, 99).unwrap();
        assert_eq!(removed, 2);
        assert!(bytes > 0);
        assert_eq!(firsts(), [4]);
        assert_eq!(retention.sweep_journal(now, 99).unwrap(), (0, 0), "nothing twice");
        assert!(path.exists());
        let left: Vec<u64> = journal.records_from(1).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(left, [4, 5]);
    }

    #[test]
    fn result_names_carry_their_seq() {
        assert_eq!(result_seq(Path::new("/x/00000012-chest.png")), Some(12));
        assert_eq!(result_seq(Path::new("/x/12-chest.sr.dcm")), Some(12));
        assert_eq!(result_seq(Path::new("/x/chest.png")), None);
        assert!(is_result_name(b"00000001-a.png") && !is_result_name(b"1-") && !is_result_name(b"a-1"));
    }
}
