//! Where radiographs come from: a watch folder (inotify through `notify`). The V4L2 capture
//! thread ([`crate::input::capture`]) feeds the same folder with the frames it chooses.
//!
//! A file is taken only when it is complete: after the writer closed it (inotify
//! `CLOSE_WRITE`) or renamed it into the folder (`MOVED_TO`), and its size and modification
//! time then stayed put for `settle` (a writer that closes and reopens to append is waited
//! for). Files already in the folder at start-up are taken the same way, oldest first.
//! Names starting with `.` or ending in `.tmp`/`.part` are ignored: writers use those while
//! writing and rename when done. Only regular files are taken, and symlinks: one to a file is
//! analyzed, one to nothing is refused with its reason; folders, FIFOs and devices are
//! never read (a FIFO would block the service).
//!
//! Between this source and the pipeline is a bounded queue (`queue` files). When it is
//! full, nothing is dropped and nothing blocks the watcher: ready files stay in the folder,
//! in arrival order, and are queued as the pipeline takes earlier ones. The folder is the
//! overflow buffer, so memory stays bounded however many files arrive at once.
//!
//! Once an input's result is journaled, [`move_out`] files it into `done/` or `failed/`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use thiserror::Error;

use crate::base::files;
use crate::base::worker::Worker;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("watch folder {}: {reason}; create it or fix watch.dir in the config", path.display())]
    Watch { path: PathBuf, reason: String },
}

/// A running watch folder: ready files come out of [`WatchFolder::recv_timeout`].
pub struct WatchFolder {
    ready: Receiver<PathBuf>,
    /// Files in the queue, not yet received.
    in_flight: Arc<AtomicUsize>,
    /// Files the watch thread holds (settling or waiting for room).
    held: Arc<AtomicUsize>,
    _worker: Worker,
}

/// Size and modification time: what "still being written" is judged by.
type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        // a folder, a FIFO, a device: never taken (reading a FIFO would block the service)
        Ok(_) => return None,
        // a symlink to nothing: taken, so it is refused with its reason once instead of
        // sitting in the folder unexplained
        Err(_) => std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.file_type().is_symlink())?,
    };
    Some((m.len(), m.modified().ok()))
}

/// Whether the watch folder hands `path` over: a regular file, or a symlink to one (or to
/// nothing, to be refused).
pub fn takeable(path: &Path) -> bool {
    stamp(path).is_some()
}

/// A file name as text for records, logs and screens: UTF-8 as it is, any other byte as
/// `\xNN`. Lossless, so two names that differ only in such bytes stay two sources (a lossy
/// conversion would make the second look already journaled).
pub fn name_text(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02X}"));
        }
    }
    text
}

/// True for names a writer uses while a file is incomplete, and our own by-products.
pub fn ignored(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") || name.ends_with(".error.txt")
}

impl WatchFolder {
    /// Start watching `dir` (which must exist). `queue` bounds the files handed over but not
    /// yet taken; `settle` is how long a closed file must stay unchanged.
    pub fn start(dir: &Path, queue: usize, settle: Duration) -> Result<WatchFolder, SourceError> {
        let fail = |reason: String| SourceError::Watch {
            path: dir.to_path_buf(),
            reason,
        };
        if !dir.is_dir() {
            return Err(fail("not a directory".into()));
        }
        // inotify reports events under the folder's real path: compare like with like, also
        // for a relative folder or one reached through a symlink
        let dir = &dir.canonicalize().map_err(|e| fail(e.to_string()))?;
        let (event_tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(event_tx).map_err(|e| fail(e.to_string()))?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| fail(e.to_string()))?;
        let (ready_tx, ready) = mpsc::sync_channel(queue.max(1));
        let mut state = State {
            dir: dir.to_path_buf(),
            settle,
            settling: HashMap::new(),
            waiting: VecDeque::new(),
            waiting_set: HashSet::new(),
            arrivals: 0,
            out: ready_tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            held: Arc::new(AtomicUsize::new(0)),
            full_logged: false,
        };
        let (in_flight, held) = (state.in_flight.clone(), state.held.clone());
        state.rescan();
        let worker = Worker::spawn("watch", move |stop| {
            // the watcher lives (and watches) as long as this thread
            let _watcher = watcher;
            while !stop.load(Ordering::Relaxed) {
                match events.recv_timeout(Duration::from_millis(50)) {
                    Ok(Ok(event)) => state.on_event(event),
                    Ok(Err(e)) => log::error!("watch folder {}: {e}", state.dir.display()),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if state.tick().is_err() {
                    break; // the pipeline is gone
                }
            }
        })
        .map_err(|e| fail(format!("cannot start its thread: {e}")))?;
        Ok(WatchFolder {
            ready,
            in_flight,
            held,
            _worker: worker,
        })
    }

    /// The next complete file, or None after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<PathBuf> {
        let path = self.ready.recv_timeout(timeout).ok()?;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        Some(path)
    }

    /// Files seen in the folder and not yet taken by the pipeline (for status).
    pub fn pending(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed) + self.held.load(Ordering::Relaxed)
    }
}

struct State {
    dir: PathBuf,
    settle: Duration,
    /// Closed or renamed-in files, waiting to prove they are unchanged: stamp, since when,
    /// and arrival number (the order they are handed over in).
    settling: HashMap<PathBuf, (Stamp, Instant, u64)>,
    arrivals: u64,
    /// Complete files the queue had no room for, in arrival order.
    waiting: VecDeque<PathBuf>,
    waiting_set: HashSet<PathBuf>,
    out: SyncSender<PathBuf>,
    /// Counted up here when handed over, down by the receiver.
    in_flight: Arc<AtomicUsize>,
    /// settling + waiting, after each tick.
    held: Arc<AtomicUsize>,
    full_logged: bool,
}

impl State {
    /// Take every file already in the folder, oldest first (also after an inotify overflow).
    fn rescan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            log::error!("watch folder {}: cannot list it", self.dir.display());
            return;
        };
        // oldest first; names break ties (coarse file-system clocks)
        let mut files: Vec<(Option<SystemTime>, PathBuf)> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !ignored(p))
            .filter_map(|p| stamp(&p).map(|s| (s.1, p)))
            .collect();
        files.sort();
        for (_, path) in files {
            self.consider(path);
        }
    }

    fn consider(&mut self, path: PathBuf) {
        if ignored(&path) || path.parent() != Some(self.dir.as_path()) || self.waiting_set.contains(&path) {
            return;
        }
        if let Some(s) = stamp(&path) {
            let arrival = match self.settling.get(&path) {
                Some(entry) => entry.2,
                None => {
                    self.arrivals += 1;
                    self.arrivals
                }
            };
            self.settling.insert(path, (s, Instant::now(), arrival));
        }
    }

    fn on_event(&mut self, event: notify::Event) {
        if event.need_rescan() {
            log::warn!("watch folder {}: events were lost, rescanning", self.dir.display());
            self.rescan();
            return;
        }
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                if let Some(p) = event.paths.last() {
                    self.consider(p.clone());
                }
            }
            // a symlink is complete when it is made (no close follows)
            EventKind::Create(_) => {
                for p in &event.paths {
                    if p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
                        self.consider(p.clone());
                    }
                }
            }
            // more data written: restart the settling clock of a file already closed once
            EventKind::Modify(ModifyKind::Data(_)) => {
                for p in &event.paths {
                    if let Some(entry) = self.settling.get_mut(p) {
                        entry.1 = Instant::now();
                    }
                }
            }
            _ => {}
        }
    }

    /// Promote settled files, then hand over as many as the queue takes. Err when the
    /// receiving side is gone.
    fn tick(&mut self) -> Result<(), ()> {
        let now = Instant::now();
        let mut settled = Vec::new();
        for (path, (old, since, _)) in self.settling.iter_mut() {
            if now.duration_since(*since) < self.settle {
                continue;
            }
            match stamp(path) {
                Some(s) if s == *old => settled.push(path.clone()),
                Some(s) => {
                    *old = s;
                    *since = now;
                }
                None => settled.push(path.clone()), // gone: dropped below
            }
        }
        settled.sort_by_key(|p| self.settling.get(p).map(|e| e.2));
        for path in settled {
            self.settling.remove(&path);
            if takeable(&path) && self.waiting_set.insert(path.clone()) {
                self.waiting.push_back(path);
            }
        }
        let handed = self.hand_over();
        self.held
            .store(self.settling.len() + self.waiting.len(), Ordering::Relaxed);
        handed
    }

    /// Queue waiting files while there is room.
    fn hand_over(&mut self) -> Result<(), ()> {
        while let Some(path) = self.waiting.pop_front() {
            // counted before the receiver can count it off
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = self.out.try_send(path.clone());
            if sent.is_err() {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            match sent {
                Ok(()) => {
                    self.waiting_set.remove(&path);
                }
                Err(TrySendError::Full(path)) => {
                    if !self.full_logged {
                        log::info!(
                            "queue full: {} file(s) wait in {} and will be taken in order",
                            self.waiting.len() + 1,
                            self.dir.display()
                        );
                        self.full_logged = true;
                    }
                    self.waiting.push_front(path);
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err(()),
            }
        }
        self.full_logged = false;
        Ok(())
    }
}

/// Move a journaled input out of the watch folder into `dir` (`done/` or `failed/`), as
/// `name.2.png`, `name.3.png`... on a name clash, with the error text beside it for a
/// failure. A move that fails is logged: the result is journaled already, and the input,
/// still in the folder, is recognised as recorded on the next start.
pub fn move_out(path: &Path, dir: &Path, error: Option<&str>) {
    // names are built as OS strings: a name that is not UTF-8 keeps its bytes
    let name = path.file_name().unwrap_or_default();
    let mut target = dir.join(name);
    let mut n = 2;
    while target.symlink_metadata().is_ok() {
        let mut other = path.file_stem().unwrap_or_default().to_os_string();
        other.push(format!(".{n}"));
        if let Some(ext) = path.extension() {
            other.push(".");
            other.push(ext);
        }
        target = dir.join(other);
        n += 1;
    }
    if let Some(error) = error {
        let mut txt = target.clone().into_os_string();
        txt.push(".error.txt");
        let txt = PathBuf::from(txt);
        if let Err(e) = files::write_durably(&txt, format!("{error}\n").as_bytes()) {
            log::error!("{}: {e}", txt.display());
        }
    }
    if let Err(e) = std::fs::rename(path, &target) {
        log::error!("{}: cannot move it to {}: {e}", path.display(), dir.display());
        return;
    }
    // its age there (retention) counts from its analysis: a film copied in with its old date
    // would otherwise go at the next sweep
    if let Err(e) = std::fs::File::open(&target).and_then(|f| f.set_modified(std::time::SystemTime::now())) {
        log::debug!("{}: cannot date it now: {e}", target.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SETTLE: Duration = Duration::from_millis(100);

    #[test]
    fn a_moved_input_is_dated_when_it_was_analyzed() {
        let dir = tempfile::tempdir().unwrap();
        let (input, done) = (dir.path().join("old.dcm"), dir.path().join("done"));
        std::fs::create_dir(&done).unwrap();
        std::fs::write(&input, b"x").unwrap();
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(400 * 86_400);
        std::fs::File::open(&input).unwrap().set_modified(long_ago).unwrap();
        move_out(&input, &done, None);
        let modified = std::fs::metadata(done.join("old.dcm")).unwrap().modified().unwrap();
        assert!(modified.elapsed().unwrap() < Duration::from_secs(60));
    }

    #[test]
    fn writer_names_are_ignored() {
        for name in [".hidden.png", "x.png.part", "x.tmp", "x.png.error.txt"] {
            assert!(ignored(Path::new(name)), "{name}");
        }
        assert!(!ignored(Path::new("x.dcm")));
    }

    #[test]
    fn a_file_still_open_for_writing_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let watch = WatchFolder::start(dir.path(), 4, SETTLE).unwrap();
        let path = dir.path().join("slow.dcm");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"first half").unwrap();
        // far longer than the settle time, but the writer has not closed the file
        assert_eq!(watch.recv_timeout(SETTLE * 5), None);
        f.write_all(b", second half").unwrap();
        drop(f);
        assert_eq!(watch.recv_timeout(Duration::from_secs(5)), Some(path));
    }

    #[test]
    fn a_full_queue_keeps_files_waiting_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("z-before-start.png"), b"0").unwrap();
        let watch = WatchFolder::start(dir.path(), 1, SETTLE).unwrap();
        std::thread::sleep(SETTLE * 3);
        for name in ["c.png", "a.png", "b.png"] {
            std::fs::write(dir.path().join(name), name).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // nobody takes anything for a while: the queue (1) is full, the rest wait
        std::thread::sleep(SETTLE * 5);
        assert_eq!(watch.pending(), 4, "one queued, three waiting");
        let mut got = Vec::new();
        while let Some(p) = watch.recv_timeout(Duration::from_secs(2)) {
            got.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(got, ["z-before-start.png", "c.png", "a.png", "b.png"]);
        assert_eq!(watch.pending(), 0);
    }

    #[test]
    fn a_relative_folder_is_watched_too() {
        // inotify names events by the folder's real path; a relative watch.dir once missed them
        let cwd = std::env::current_dir().unwrap();
        let dir = tempfile::tempdir_in(&cwd).unwrap();
        let relative = dir.path().strip_prefix(&cwd).unwrap();
        assert!(relative.is_relative());
        let watch = WatchFolder::start(relative, 2, SETTLE).unwrap();
        std::fs::write(dir.path().join("x.png"), b"x").unwrap();
        let got = watch.recv_timeout(Duration::from_secs(5)).expect("the file is taken");
        assert_eq!(got.file_name().unwrap(), "x.png");
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let err = WatchFolder::start(Path::new("/nonexistent/ptxd-in"), 1, SETTLE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/nonexistent/ptxd-in") && err.contains("watch.dir"),
            "{err}"
        );
    }
}
