//! A simulated disk for crash tests (feature `simdisk`, never in a release build of the
//! broker).
//!
//! While installed on a thread, every file operation of `engine::io` (creating a file,
//! each direct-I/O write, truncation, fdatasync, directory sync, removal) is recorded in an
//! in-memory model of what the device holds *durably* and what is only written. The real
//! files are still written so the log can read them back during a run, but fdatasync and
//! directory syncs are not issued to the real device: the model decides what survives.
//!
//! At a simulated crash the model builds the image a power cut could leave: for every file,
//! the bytes made durable by its last fdatasync, then a random prefix of the writes and
//! truncations issued since (the last of them possibly torn at a 512-byte sector); a file
//! created or removed since its directory's last sync may or may not exist. Operations can
//! also fail with EIO, once (`fail_op`) or from the crash on (every operation after the
//! crash fails, so nothing done after it can be acknowledged as durable by mistake), and the
//! disk can fill (`full_from_op`): from then on creating and writing files fails with
//! ENOSPC until [`free_space`]. One write can be cut short (`short_write_op`): only whole
//! sectors of its start reach the file, as a device or file system may do.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Sector size a torn write is cut at.
const SECTOR: usize = 512;

/// What the simulated disk should do.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimConfig {
    /// Seed of the random choices made at the crash.
    pub seed: u64,
    /// Crash when this many operations have been issued (the operation that reaches it fails).
    pub crash_after_ops: Option<u64>,
    /// Fail this one operation (counted from 1) with EIO, without crashing.
    pub fail_op: Option<u64>,
    /// The disk is full from this operation on (creates and writes fail with ENOSPC) until
    /// [`free_space`].
    pub full_from_op: Option<u64>,
    /// This one operation, if a write, is short: only a part of it (whole sectors) reaches
    /// the file, and the caller is told how much.
    pub short_write_op: Option<u64>,
}

/// What happened during a run.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Operations issued.
    pub ops: u64,
    /// fdatasync calls recorded.
    pub syncs: u64,
    /// Whether the crash happened.
    pub crashed: bool,
    /// Whether the injected EIO was returned.
    pub failed: bool,
    /// Operations refused with ENOSPC.
    pub no_space: u64,
    /// Writes cut short.
    pub short_writes: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, bytes: Vec<u8> },
    Truncate(u64),
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    durable: Vec<u8>,
    pending: Vec<Op>,
    /// The directory entry survives a crash (synced since creation).
    entry_durable: bool,
    /// Removed; the entry may still come back until the directory is synced.
    removed: bool,
}

/// A rename not yet made durable by a sync of its directory: a crash may undo it.
#[derive(Debug)]
struct Rename {
    from: PathBuf,
    to: PathBuf,
    /// What `to` was before.
    replaced: Option<SimFile>,
}

struct SimDisk {
    config: SimConfig,
    rng: u64,
    files: BTreeMap<PathBuf, SimFile>,
    renames: Vec<Rename>,
    report: SimReport,
    image: Option<HashMap<PathBuf, Vec<u8>>>,
}

thread_local! {
    static DISK: RefCell<Option<SimDisk>> = const { RefCell::new(None) };
}

/// Starts simulating on this thread (a glommio executor is one thread), forgetting any
/// earlier simulation.
pub fn install(config: SimConfig) {
    DISK.with(|d| {
        *d.borrow_mut() = Some(SimDisk {
            config,
            rng: config.seed ^ 0x9e37_79b9_7f4a_7c15,
            files: BTreeMap::new(),
            renames: Vec::new(),
            report: SimReport::default(),
            image: None,
        })
    });
}

/// Stops simulating; returns what happened.
pub fn uninstall() -> Option<SimReport> {
    DISK.with(|d| d.borrow_mut().take().map(|disk| disk.report))
}

/// The files a crash left, by path: taken at the crash, or now if it has not happened
/// (which makes it happen: every later operation fails).
pub fn crash_image() -> HashMap<PathBuf, Vec<u8>> {
    DISK.with(|d| {
        let mut guard = d.borrow_mut();
        let disk = guard.as_mut().expect("simdisk installed");
        if disk.image.is_none() {
            disk.crash();
        }
        disk.image.clone().unwrap_or_default()
    })
}

/// Writes the files of directory `from` in a crash image into `dir`, keeping each file's
/// name. Only `from`'s: the image may also hold writes to other directories (an earlier
/// run's writes still in flight when this simulation was installed), and copying those by
/// name would mix two logs' segments in one directory.
///
/// # Errors
/// Creating the directory or writing a file failed.
pub fn write_image(
    image: &HashMap<PathBuf, Vec<u8>>,
    from: &Path,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (path, bytes) in image {
        let Some(name) = path.file_name().filter(|_| path.parent() == Some(from)) else {
            continue;
        };
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// Crashes when `ops` more operations have been issued (the one that reaches it fails).
pub fn crash_in(ops: u64) {
    let _ = with(|disk| {
        disk.config.crash_after_ops = Some(disk.report.ops + ops.max(1));
        Ok(())
    });
}

/// Fails (EIO) the operation issued `ops` operations from now (the next one for 1).
pub fn fail_in(ops: u64) {
    let _ = with(|disk| {
        disk.config.fail_op = Some(disk.report.ops + ops.max(1));
        Ok(())
    });
}

/// Space is freed: the full disk takes writes again.
pub fn free_space() {
    let _ = with(|disk| {
        disk.config.full_from_op = None;
        Ok(())
    });
}

/// What happened so far in this thread's simulation (default when none is installed).
pub fn report() -> SimReport {
    DISK.with(|d| d.borrow().as_ref().map(|disk| disk.report.clone()))
        .unwrap_or_default()
}

/// ENOSPC, as Linux numbers it.
const ENOSPC: i32 = 28;

fn eio(what: &str) -> std::io::Error {
    std::io::Error::other(format!("simulated EIO ({what})"))
}

impl SimDisk {
    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_random() % n
        }
    }

    /// Counts an operation; fails it when it is the injected failure or at/after the crash.
    fn admit(&mut self, what: &str) -> std::io::Result<()> {
        if self.image.is_some() {
            return Err(eio(what));
        }
        self.report.ops += 1;
        let ops = self.report.ops;
        if self.config.crash_after_ops.is_some_and(|at| ops >= at) {
            self.crash();
            return Err(eio(what));
        }
        if self.config.fail_op == Some(ops) {
            self.report.failed = true;
            return Err(eio(what));
        }
        let needs_space = matches!(what, "create" | "write");
        if needs_space && self.config.full_from_op.is_some_and(|at| ops >= at) {
            self.report.no_space += 1;
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn crash(&mut self) {
        self.report.crashed = true;
        // Renames not yet synced: a prefix of them survives (the file system keeps their
        // order); the rest are undone.
        let mut files = self.files.clone();
        let survive = self.below(self.renames.len() as u64 + 1) as usize;
        for rename in self.renames[survive..].iter().rev() {
            if let Some(moved) = files.remove(&rename.to) {
                files.insert(rename.from.clone(), moved);
            }
            if let Some(replaced) = &rename.replaced {
                files.insert(rename.to.clone(), replaced.clone());
            }
        }
        let paths: Vec<PathBuf> = files.keys().cloned().collect();
        let mut image = HashMap::new();
        for path in paths {
            let (entry_durable, removed, pending) = {
                let file = &files[&path];
                (file.entry_durable, file.removed, file.pending.len() as u64)
            };
            let exists = match (entry_durable, removed) {
                (true, false) => true,
                // Created or removed since the directory's last sync: either way.
                _ => self.below(2) == 0,
            };
            if !exists {
                continue;
            }
            let kept = self.below(pending + 1) as usize;
            let torn = self.below(2) == 0;
            let tear_at = self.next_random() as usize;
            let file = &files[&path];
            let mut bytes = file.durable.clone();
            for (i, op) in file.pending.iter().take(kept).enumerate() {
                let last = i + 1 == kept;
                match op {
                    Op::Truncate(len) => bytes.resize(*len as usize, 0),
                    Op::Write {
                        position,
                        bytes: data,
                    } => {
                        let mut len = data.len();
                        if last && torn && len > SECTOR {
                            len = (tear_at % (len / SECTOR)) * SECTOR;
                        }
                        apply_write(&mut bytes, *position, &data[..len]);
                    }
                }
            }
            image.insert(path, bytes);
        }
        self.image = Some(image);
    }
}

fn apply_write(bytes: &mut Vec<u8>, position: u64, data: &[u8]) {
    let start = position as usize;
    if bytes.len() < start + data.len() {
        bytes.resize(start + data.len(), 0);
    }
    bytes[start..start + data.len()].copy_from_slice(data);
}

fn with<T>(f: impl FnOnce(&mut SimDisk) -> std::io::Result<T>) -> Option<std::io::Result<T>> {
    DISK.with(|d| d.borrow_mut().as_mut().map(f))
}

/// A file was created or truncated to zero when opened.
pub(crate) fn created(path: &Path) -> std::io::Result<()> {
    with(|disk| {
        disk.admit("create")?;
        let file = disk.files.entry(path.to_owned()).or_default();
        if file.removed {
            *file = SimFile::default();
        }
        file.pending.push(Op::Truncate(0));
        Ok(())
    })
    .unwrap_or(Ok(()))
}

/// A write was issued (before it reaches the real file). `Ok(Some(n))`: the write is
/// short, only its first `n` bytes reach the file (the caller writes those alone).
pub(crate) fn write(path: &Path, position: u64, data: &[u8]) -> std::io::Result<Option<usize>> {
    with(|disk| {
        disk.admit("write")?;
        let short = (disk.config.short_write_op == Some(disk.report.ops) && data.len() > SECTOR)
            .then(|| (disk.next_random() as usize % (data.len() / SECTOR)) * SECTOR);
        let kept = short.unwrap_or(data.len());
        disk.report.short_writes += u64::from(short.is_some());
        disk.files
            .entry(path.to_owned())
            .or_default()
            .pending
            .push(Op::Write {
                position,
                bytes: data[..kept].to_vec(),
            });
        Ok(short)
    })
    .unwrap_or(Ok(None))
}

/// A truncation was issued.
pub(crate) fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    with(|disk| {
        disk.admit("truncate")?;
        disk.files
            .entry(path.to_owned())
            .or_default()
            .pending
            .push(Op::Truncate(len));
        Ok(())
    })
    .unwrap_or(Ok(()))
}

/// fdatasync of a file; `Ok(true)` when simulated (skip the real call).
pub(crate) fn sync(path: &Path) -> std::io::Result<bool> {
    with(|disk| {
        disk.admit("fdatasync")?;
        disk.report.syncs += 1;
        let file = disk.files.entry(path.to_owned()).or_default();
        for op in std::mem::take(&mut file.pending) {
            match op {
                Op::Truncate(len) => file.durable.resize(len as usize, 0),
                Op::Write { position, bytes } => apply_write(&mut file.durable, position, &bytes),
            }
        }
        Ok(true)
    })
    .unwrap_or(Ok(false))
}

/// A directory sync; `Ok(true)` when simulated.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<bool> {
    with(|disk| {
        disk.admit("directory sync")?;
        disk.files.retain(|path, file| {
            if path.parent() != Some(dir) {
                return true;
            }
            file.entry_durable = true;
            !file.removed
        });
        disk.renames
            .retain(|r| r.to.parent() != Some(dir) && r.from.parent() != Some(dir));
        Ok(true)
    })
    .unwrap_or(Ok(false))
}

/// A file was removed.
pub(crate) fn removed(path: &Path) -> std::io::Result<()> {
    with(|disk| {
        disk.admit("remove")?;
        if let Some(file) = disk.files.get_mut(path) {
            file.removed = true;
        }
        Ok(())
    })
    .unwrap_or(Ok(()))
}

/// `from` was renamed over `to`.
pub(crate) fn renamed(from: &Path, to: &Path) -> std::io::Result<()> {
    with(|disk| {
        disk.admit("rename")?;
        let mut moved = disk.files.remove(from).unwrap_or_default();
        // The name is in the directory either way; the rename record decides which file.
        moved.entry_durable = true;
        let replaced = disk.files.insert(to.to_owned(), moved);
        disk.renames.push(Rename {
            from: from.to_owned(),
            to: to.to_owned(),
            replaced,
        });
        Ok(())
    })
    .unwrap_or(Ok(()))
}
