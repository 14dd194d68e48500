//! The journal's files: numbered segments of CRC-checked frames plus snapshots that
//! bound replay. Payloads are opaque; the engine above decides what a batch or a
//! snapshot chunk means.
//!
//! Every file is an 8-octet magic, then frames `[u32 LE length][u32 LE crc32 of
//! payload][payload]`. `snapshot-N.snap` is the whole state as of the start of
//! `journal-N.log`, so it replaces every segment below N. A crash can only tear the
//! tail of the segment being written, and only after its last fdatasync (nothing
//! there was acknowledged): open truncates that tail. Damage anywhere else is
//! reported, never skipped. Frames are never empty, so a zero length ends the data.
//!
//! # Preallocated segments
//!
//! A segment is used only once it exists at its full size (`segment_bytes`) with
//! zeros really written and synced, file and directory entry; frames are then written
//! into it with positional writes. An fdatasync after a write that grows a file must
//! also commit the new size through the file system's journal; after an overwrite of
//! blocks already written it has no metadata to commit. Measured on the development
//! VM (ext4, pwrite + fdatasync, 400 rounds): appending 128 KiB, p50 0.56 ms and
//! average 0.84 ms; overwriting zeros already synced, p50 0.16 ms and average 0.20 ms
//! (16 KiB: 0.21 -> 0.10 ms). `fallocate` alone would not do: an unwritten extent
//! still needs a metadata change on its first write. (Databases zero-fill their
//! write-ahead log segments ahead for the same reason.)
//!
//! Zero-filling 64 MiB takes a while, so the NEXT segment is prepared on a background
//! thread as `segment.spare` (a name that is never taken for a segment) and renamed to
//! `journal-N.log` at rotation; if it is not done then, rotation waits for it, and if
//! it failed, rotation zero-fills one itself. A spare found at open is deleted.
//! The zeros are written with `O_DIRECT` where the file system allows it, not
//! through the page cache, and the frames written later are padded to whole pages
//! so the kernel need not read a page back to complete one ([`zero_fill`]).
//! `examples/ingest.rs --no-baseline`, eight alternating pairs, cache -> direct:
//! p99 5.9-8.1 -> 4.2-5.5 ms in every pair, p99.9 lower in seven; throughput
//! within the noise (faster in five); the spare thread's CPU 725 -> 84 samples of
//! a profiled run, of which ~70 moved to the committer's own writes.
//!
//! Consequences: the last segment normally ends in zeros (its space not written
//! yet). Open treats all-zeros after the data as the end of the journal, not as
//! damage, and appends continue there. A finished segment is cut to its data and
//! synced before the next one is put in place, so a segment that is not the last
//! never has a zero tail, and a zero length there is still damage. On disk the
//! journal takes a whole segment (plus the spare) as soon as it starts one.
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

const SEGMENT_MAGIC: &[u8; 8] = b"SMXJRN01";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SMXSNP01";
const FRAME_HEADER: u64 = 8;
/// Longest payload; a larger length field is damage, not a reason to allocate.
const MAX_FRAME: usize = 1 << 30;
/// A write buffer grown past this by one huge batch is given back after the sync.
const KEEP_BUFFER: usize = 16 << 20;
/// The next segment being zero-filled ahead of use. Not a `journal-N.log` name, so
/// [`list`] never takes it for a segment; renamed into place at rotation.
const SPARE: &str = "segment.spare";
/// Zeros written per call while preparing a segment.
const ZERO_CHUNK: usize = 1 << 20;
/// A segment being prepared is synced every this many octets, so its data reaches
/// the disk in steps instead of one burst in front of the journal's own syncs.
const ZERO_SYNC_EVERY: u64 = 8 << 20;
/// The page size frame writes are padded to, and the alignment of direct writes.
const PAGE: u64 = 4096;

/// One replayed frame.
pub enum Entry<'a> {
    /// A chunk of the newest snapshot, in the order written.
    Snapshot(&'a [u8]),
    /// A batch appended after the snapshot point, in append order.
    Batch(&'a [u8]),
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("journal i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("journal {path} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// The replay callback refused an entry.
    #[error("journal replay: {0}")]
    Replay(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> LogError {
    LogError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// `[u32 LE length][u32 LE crc32]` of a frame carrying `payload` (at most [`MAX_FRAME`]).
fn frame_header(payload: &[u8]) -> [u8; 8] {
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// What open read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub snapshot_frames: u64,
    pub batches: u64,
    /// Octets of data replayed: the snapshot and the segments, magic included,
    /// after truncation; a last segment's zero-filled space is not counted.
    pub bytes: u64,
    /// Octets of damage dropped from a torn tail of the last segment: from the
    /// first bad frame to the last non-zero octet after it.
    pub truncated_bytes: u64,
    /// Zero-filled octets after the data of the last segment (the preallocated
    /// space not written yet; cut off, or written next when the segment is reused).
    /// Not damage.
    pub zero_tail_bytes: u64,
}

/// The start of segment `segment`: a snapshot taken now is written for it.
#[derive(Debug)]
pub struct SnapshotPoint {
    dir: PathBuf,
    segment: u64,
}

impl SnapshotPoint {
    /// The segment number N of `snapshot-N.snap`.
    pub fn segment(&self) -> u64 {
        self.segment
    }
}

/// The appending side of the journal. Not shared: the engine's committer owns it.
#[derive(Debug)]
pub struct JournalLog {
    dir: PathBuf,
    segment_bytes: u64,
    segment: u64,
    /// Shared with the engine's syncer threads (see [`file`](Self::file)).
    file: Arc<File>,
    /// Octets of data in the current segment file (magic included): where the next
    /// frame is written.
    segment_len: u64,
    /// The current segment file's size: its preallocated size, or more when a
    /// batch ran past it.
    file_len: u64,
    /// The next segment, being zero-filled in the background.
    spare: Option<Spare>,
    /// Frames appended since the last sync; reused so a batch costs no allocation.
    buf: Vec<u8>,
    since_snapshot: u64,
    /// Why every sync now fails: a write or fdatasync failed (what reached the disk is
    /// unknown, and a failed fdatasync cannot be retried safely) or a payload was too
    /// long. Either way the caller's state is ahead of the journal: reopen to recover.
    failed: Option<String>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("journal-{n:020}.log"))
}

fn snapshot_path(dir: &Path, n: u64, ext: &str) -> PathBuf {
    dir.join(format!("snapshot-{n:020}.{ext}"))
}

/// A background zero-fill of [`SPARE`]: its file once it is complete and synced,
/// `None` when cancelled.
#[derive(Debug)]
struct Spare {
    handle: JoinHandle<Result<Option<File>, LogError>>,
    cancel: Arc<AtomicBool>,
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Journal files in `dir`: (segments, snapshots, interrupted snapshot temporaries).
type Listing = (Vec<u64>, Vec<u64>, Vec<PathBuf>);

fn list(dir: &Path) -> Result<Listing, LogError> {
    let (mut segments, mut snapshots, mut tmps) = (Vec::new(), Vec::new(), Vec::new());
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = |prefix: &str, ext: &str| {
            let digits = name.strip_prefix(prefix)?.strip_suffix(ext)?;
            (digits.len() == 20).then(|| digits.parse::<u64>().ok()).flatten()
        };
        if let Some(n) = number("journal-", ".log") {
            segments.push(n);
        } else if let Some(n) = number("snapshot-", ".snap") {
            snapshots.push(n);
        } else if number("snapshot-", ".tmp").is_some() {
            tmps.push(dir.join(name));
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();
    Ok((segments, snapshots, tmps))
}

/// Reads every frame of `path`, handing each payload to `each`. Damage is
/// `Corrupt`, unless `torn_ok` (the last segment): then the scan stops there and
/// returns the length of the intact prefix (0 when even the magic is incomplete).
fn scan(
    path: &Path,
    magic: &[u8; 8],
    torn_ok: bool,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]) -> Result<(), LogError>,
) -> Result<(u64, u64), LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let damaged = |offset: u64, reason: &str| {
        if torn_ok {
            Ok((offset, len))
        } else {
            Err(corrupt(path, offset, reason))
        }
    };
    if len < FRAME_HEADER {
        return damaged(0, "shorter than the magic");
    }
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).map_err(io_err(path))?;
    if &header != magic {
        return Err(corrupt(path, 0, "wrong magic"));
    }
    let mut offset = FRAME_HEADER;
    while offset < len {
        if len - offset < FRAME_HEADER {
            return damaged(offset, "short frame header");
        }
        reader.read_exact(&mut header).map_err(io_err(path))?;
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if size == 0 {
            return damaged(offset, "zero-length frame");
        }
        if size > MAX_FRAME {
            return damaged(offset, &format!("frame length {size} over 1 GiB"));
        }
        if len - offset - FRAME_HEADER < size as u64 {
            return damaged(offset, "frame runs past the end of the file");
        }
        buf.resize(size, 0);
        reader.read_exact(buf).map_err(io_err(path))?;
        if crc32fast::hash(buf) != crc {
            return damaged(offset, "crc mismatch");
        }
        each(buf)?;
        offset += FRAME_HEADER + size as u64;
    }
    Ok((len, len))
}

/// The offset just past the last non-zero octet of `path` in `from..len`, or `from`
/// when that range is all zeros (the preallocated space after the data).
fn data_end(path: &Path, from: u64, len: u64) -> Result<u64, LogError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut chunk = vec![0u8; ZERO_CHUNK];
    let (mut at, mut end) = (from, from);
    while at < len {
        let want = (len - at).min(ZERO_CHUNK as u64) as usize;
        file.read_exact(&mut chunk[..want]).map_err(io_err(path))?;
        if let Some(last) = chunk[..want].iter().rposition(|&b| b != 0) {
            end = at + last as u64 + 1;
        }
        at += want as u64;
    }
    Ok(end)
}

/// Writes [`SPARE`] from scratch: the segment magic, then zeros up to `size` octets,
/// really written (an fallocated, unwritten extent would still need a metadata commit
/// on its first write) and synced, size included. Returns `None` when `cancel` was set
/// first. The file is not a segment until [`install`] renames it. A spare not
/// finished (cancelled, or an error such as a full disk) is deleted.
fn prepare_spare(dir: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<File>, LogError> {
    let prepared = zero_fill(dir, size, cancel);
    if !matches!(prepared, Ok(Some(_))) {
        let _ = fs::remove_file(dir.join(SPARE));
    }
    prepared
}

/// Writes the spare: the magic, then zeros to `size`, synced.
///
/// With `O_DIRECT` where the file system has it (and `size` is whole pages):
/// the zeros go from one buffer to the disk, not through the page cache.
/// Written through the cache, copying 64 MiB of zeros into it per segment
/// was ~9% of the CPU of an ingest run (4 binds x window 256, 2 cores), and
/// it filled the cache with pages the journal then overwrote anyway. The
/// journal's own writes go through the cache; they are padded to whole
/// pages (see [`JournalLog::write`]) so the kernel never reads a zeroed
/// page back from the disk to complete one.
fn zero_fill(dir: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<File>, LogError> {
    let path = dir.join(SPARE);
    remove(&path)?;
    let direct = if size.is_multiple_of(PAGE) {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .ok()
    } else {
        None
    };
    let file = match direct {
        Some(file) => file,
        // No O_DIRECT here (tmpfs, some network file systems): through the
        // cache. The refused open may have created the file already.
        None => {
            remove(&path)?;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err(&path))?
        }
    };
    // Page-aligned for O_DIRECT: a Vec has no alignment, so one a page
    // longer is allocated and the chunk starts at its first page boundary.
    let mut buffer = vec![0u8; ZERO_CHUNK + PAGE as usize];
    let start = buffer.as_ptr().align_offset(PAGE as usize);
    let chunk = &mut buffer[start..start + ZERO_CHUNK];
    chunk[..SEGMENT_MAGIC.len()].copy_from_slice(SEGMENT_MAGIC);
    let mut at = 0;
    let mut synced = 0;
    while at < size {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = (size - at).min(ZERO_CHUNK as u64) as usize;
        file.write_all_at(&chunk[..n], at).map_err(io_err(&path))?;
        if at == 0 {
            chunk[..SEGMENT_MAGIC.len()].fill(0);
        }
        at += n as u64;
        if at - synced >= ZERO_SYNC_EVERY {
            file.sync_data().map_err(io_err(&path))?;
            synced = at;
        }
    }
    file.sync_all().map_err(io_err(&path))?;
    drop(file);
    // The segment is written through the page cache: opened again without O_DIRECT.
    let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
    Ok(Some(file))
}

/// Renames the prepared [`SPARE`] to segment `n` and syncs the directory: from here
/// on `n` is a segment, complete on disk (magic and zeros) since before its name.
fn install(dir: &Path, n: u64) -> Result<(), LogError> {
    let path = segment_path(dir, n);
    fs::rename(dir.join(SPARE), &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

fn remove(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Deletes what snapshot `n` replaces: segments below `n` and older snapshots.
fn remove_replaced(dir: &Path, n: u64) -> Result<(), LogError> {
    let (segments, snapshots, _) = list(dir)?;
    for s in segments.into_iter().filter(|&s| s < n) {
        remove(&segment_path(dir, s))?;
    }
    for s in snapshots.into_iter().filter(|&s| s < n) {
        remove(&snapshot_path(dir, s, "snap"))?;
    }
    sync_dir(dir)
}

impl JournalLog {
    /// Opens (creating `dir` if needed) and replays: the newest snapshot's frames as
    /// [`Entry::Snapshot`], then every segment from that snapshot's N on as
    /// [`Entry::Batch`]. A torn tail of the last segment is truncated; damage anywhere
    /// else, or a missing segment, is [`LogError::Corrupt`]. Files the snapshot replaces
    /// are deleted only after a complete replay, and a spare segment left over is
    /// deleted (whether its zeros reached the disk is unknown). Appends then continue
    /// in the last segment when all after its data is zeros (its preallocated space)
    /// and it is not full; otherwise they go to a new segment, created here at its full
    /// size. Either way the segment after it starts being prepared in the background.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        mut f: impl FnMut(Entry<'_>) -> Result<(), String>,
    ) -> Result<(JournalLog, ReplayStats), LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (segments, snapshots, tmps) = list(dir)?;
        for tmp in &tmps {
            remove(tmp)?;
        }
        remove(&dir.join(SPARE))?;
        let mut stats = ReplayStats::default();
        let mut buf = Vec::new();
        let base = snapshots.last().copied();
        if let Some(n) = base {
            let path = snapshot_path(dir, n, "snap");
            let (len, _) = scan(&path, SNAPSHOT_MAGIC, false, &mut buf, |p| {
                stats.snapshot_frames += 1;
                f(Entry::Snapshot(p)).map_err(LogError::Replay)
            })?;
            stats.bytes += len;
        }
        let live: Vec<u64> = segments.iter().copied().filter(|&s| s >= base.unwrap_or(0)).collect();
        let mut expected = base.unwrap_or(1);
        let mut since_snapshot = 0;
        // The last segment, when appends continue in it: (number, data length, size).
        let mut reuse = None;
        for (i, &n) in live.iter().enumerate() {
            let path = segment_path(dir, n);
            if n != expected {
                return Err(corrupt(&path, 0, format!("segment {expected} is missing before it")));
            }
            expected = n + 1;
            let last = i + 1 == live.len();
            let (valid, len) = scan(&path, SEGMENT_MAGIC, last, &mut buf, |p| {
                stats.batches += 1;
                f(Entry::Batch(p)).map_err(LogError::Replay)
            })?;
            if valid < len {
                let end = data_end(&path, valid, len)?;
                stats.zero_tail_bytes += len - end;
                if end == valid && valid >= FRAME_HEADER && valid < segment_bytes {
                    // Only zeros after the data: the preallocated space, written and
                    // synced before the segment was used. Appends go on there.
                    tracing::debug!(path = %path.display(), offset = valid, zeros = len - valid, "journal continues in its last segment");
                    reuse = Some((n, valid, len));
                    stats.bytes += valid;
                    since_snapshot += valid;
                    continue;
                }
                let dropped = end - valid;
                if dropped == 0 {
                    tracing::debug!(path = %path.display(), offset = valid, zeros = len - valid, "cutting the zero tail of a full journal segment");
                } else {
                    tracing::warn!(path = %path.display(), offset = valid, dropped, zeros = len - end, "truncating torn journal tail");
                }
                let keep = valid.max(FRAME_HEADER);
                let mut file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                file.set_len(valid)
                    .and_then(|()| file.write_all(&SEGMENT_MAGIC[..(keep - valid) as usize])) // a torn magic
                    .and_then(|()| file.sync_all())
                    .map_err(io_err(&path))?;
                stats.truncated_bytes += dropped;
                stats.bytes += keep;
                since_snapshot += keep;
            } else {
                if last {
                    // After a crash of the process alone, frames it wrote but never
                    // synced are still in the page cache and were just replayed: make
                    // them durable before anything is done on them, and before this
                    // segment stops being the last (a torn one before the last is damage).
                    File::open(&path)
                        .and_then(|file| file.sync_all())
                        .map_err(io_err(&path))?;
                }
                stats.bytes += len;
                since_snapshot += len;
            }
        }
        if let Some(n) = base {
            remove_replaced(dir, n)?;
        }
        let size = segment_bytes.max(FRAME_HEADER);
        let (segment, file, segment_len, file_len) = match reuse {
            Some((n, valid, len)) => {
                let path = segment_path(dir, n);
                let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                // As for a last segment above: what was replayed is made durable now.
                file.sync_data().map_err(io_err(&path))?;
                (n, file, valid, len)
            }
            None => {
                let segment = live.last().map_or(base.unwrap_or(1), |&last| last + 1);
                let file = prepare_spare(dir, size, &AtomicBool::new(false))?
                    .ok_or_else(|| io_err(dir)(io::Error::other("segment preparation cancelled")))?;
                install(dir, segment)?;
                (segment, file, FRAME_HEADER, size)
            }
        };
        let mut log = JournalLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            segment,
            file: Arc::new(file),
            segment_len,
            file_len,
            spare: None,
            buf: Vec::new(),
            since_snapshot,
            failed: None,
        };
        log.start_spare();
        Ok((log, stats))
    }

    /// Adds one frame to the write buffer (no I/O). An empty payload carries nothing
    /// and is not written. A payload over 1 GiB makes the next [`sync`](Self::sync) fail.
    pub fn append(&mut self, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        if payload.len() > MAX_FRAME {
            return self.fail(format!("a payload of {} octets is over 1 GiB", payload.len()));
        }
        self.buf.extend_from_slice(&frame_header(payload));
        self.buf.extend_from_slice(payload);
    }

    /// [`write`](Self::write), then one fdatasync of the current segment, which also
    /// covers frames earlier `write`s left unsynced. Returns the octets written. After
    /// an error every later sync fails too: reopen to recover what is durable.
    pub fn sync(&mut self) -> Result<u64, LogError> {
        let written = self.write()?;
        // Also covers frames an earlier `write` left to the caller to sync.
        if let Err(e) = self.file.sync_data() {
            self.fail(format!("fdatasync: {e}"));
            return Err(io_err(&segment_path(&self.dir, self.segment))(e));
        }
        Ok(written)
    }

    /// Writes the buffer (one write) WITHOUT syncing it: the caller makes it
    /// durable with `sync_data` on [`file`](Self::file), from any thread, and
    /// several such syncs may run at once (a sync covers every write that
    /// completed before it began). When the segment is full it is synced here,
    /// completely, before the next one is started, so a frame is only ever
    /// waiting for a sync of the current file. Returns the octets written.
    pub fn write(&mut self) -> Result<u64, LogError> {
        // Only for an error: formatting it on every write was ~1% of the
        // committer's time in the full flow.
        let path = |log: &JournalLog| segment_path(&log.dir, log.segment);
        if let Some(reason) = &self.failed {
            let source = io::Error::other(format!("journal failed earlier ({reason}); reopen it"));
            return Err(LogError::Io {
                path: path(self),
                source,
            });
        }
        if self.buf.is_empty() {
            return Ok(0);
        }
        let written = self.buf.len() as u64;
        // Padded with zeros (what the preallocated space holds there already) to the
        // end of its last page: a write that ends inside a page the page cache does
        // not have makes the kernel read that page from the disk first, and the
        // zero-fill does not leave the segment's pages in the cache. The next write
        // starts at the data's end, over the padding.
        let end = self.segment_len + written;
        let padded = end.next_multiple_of(PAGE).min(self.file_len).max(end);
        self.buf.resize((padded - self.segment_len) as usize, 0);
        // Into the preallocated space: an overwrite, whose fdatasync has no file size
        // to commit. A batch longer than the space left makes the file grow.
        if let Err(e) = self.file.write_all_at(&self.buf, self.segment_len) {
            self.fail(format!("write: {e}"));
            return Err(io_err(&path(self))(e));
        }
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf.shrink_to(KEEP_BUFFER / 16);
        }
        self.segment_len += written;
        self.file_len = self.file_len.max(self.segment_len);
        self.since_snapshot += written;
        if self.segment_len >= self.segment_bytes {
            if let Err(e) = self.file.sync_data() {
                self.fail(format!("fdatasync: {e}"));
                return Err(io_err(&path(self))(e));
            }
            self.rotate()?;
        }
        Ok(written)
    }

    /// The current segment file, for syncing frames written by [`write`](Self::write).
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    fn fail(&mut self, reason: String) {
        self.failed.get_or_insert(reason);
        self.buf.clear();
    }

    /// Moves appends to segment N + 1. In this order, so that a crash at any point
    /// leaves a journal that opens to exactly the synced frames: (1) segment N is cut
    /// to its data and synced (its frames already were), so only the last segment
    /// ever has a zero tail; (2) the spare, complete and synced, is renamed to
    /// `journal-(N+1).log` and the directory synced; (3) appends go there. A crash
    /// before (2) leaves N last (and a spare, deleted at open); after it, N + 1 is
    /// magic and zeros. Waits for the spare if it is still being zero-filled, and
    /// zero-fills one here if there is none.
    fn rotate(&mut self) -> Result<(), LogError> {
        self.next_segment().inspect_err(|e| self.fail(format!("rotation: {e}")))
    }

    fn next_segment(&mut self) -> Result<(), LogError> {
        if self.file_len > self.segment_len {
            let path = segment_path(&self.dir, self.segment);
            self.file
                .set_len(self.segment_len)
                .and_then(|()| self.file.sync_all())
                .map_err(io_err(&path))?;
            self.file_len = self.segment_len;
        }
        let file = self.take_spare()?;
        install(&self.dir, self.segment + 1)?;
        self.file = Arc::new(file);
        self.segment += 1;
        self.segment_len = FRAME_HEADER;
        self.file_len = self.segment_bytes.max(FRAME_HEADER);
        self.start_spare();
        Ok(())
    }

    /// Starts zero-filling the next segment on a background thread. If the thread
    /// cannot start, the next rotation zero-fills it itself.
    fn start_spare(&mut self) {
        let cancel = Arc::new(AtomicBool::new(false));
        let (dir, size, stop) = (self.dir.clone(), self.segment_bytes.max(FRAME_HEADER), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || prepare_spare(&dir, size, &stop));
        match spawned {
            Ok(handle) => self.spare = Some(Spare { handle, cancel }),
            Err(e) => {
                tracing::warn!(error = %e, "journal spare segment thread not started; the next rotation zero-fills it")
            }
        }
    }

    /// The prepared spare: the background one (waited for if it is not done yet: that
    /// is sooner than starting over), or, if it failed or there is none, one
    /// zero-filled now.
    fn take_spare(&mut self) -> Result<File, LogError> {
        if let Some(spare) = self.spare.take() {
            let started = Instant::now();
            let ready = spare.handle.is_finished();
            match spare.handle.join() {
                Ok(Ok(Some(file))) => {
                    if !ready {
                        tracing::info!(
                            waited_ms = started.elapsed().as_millis() as u64,
                            "journal rotation waited for the next segment's zero-fill"
                        );
                    }
                    return Ok(file);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "journal spare segment failed; zero-filling the next one now"),
                Err(_) => tracing::warn!("journal spare segment thread panicked; zero-filling the next one now"),
            }
        }
        let started = Instant::now();
        let file = prepare_spare(&self.dir, self.segment_bytes.max(FRAME_HEADER), &AtomicBool::new(false))?
            .ok_or_else(|| io_err(&self.dir)(io::Error::other("segment preparation cancelled")))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "journal rotation zero-filled the next segment itself"
        );
        Ok(file)
    }

    /// Octets written since the last snapshot point (since open: the replayed segments).
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    /// Syncs and moves appends to a fresh segment N (the current one if it is still
    /// empty). The caller serialises its state as of now and passes it, with the point,
    /// to [`write_snapshot`] while appends go on in segment N.
    pub fn snapshot_point(&mut self) -> Result<SnapshotPoint, LogError> {
        self.sync()?;
        if self.segment_len > FRAME_HEADER {
            self.rotate()?;
        }
        self.since_snapshot = 0;
        Ok(SnapshotPoint {
            dir: self.dir.clone(),
            segment: self.segment,
        })
    }
}

impl Drop for JournalLog {
    /// Stops the spare's zero-fill and waits for its thread, so nothing writes in the
    /// directory once the log is gone (the next open deletes the partial spare).
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.cancel.store(true, Ordering::Relaxed);
            let _ = spare.handle.join();
        }
    }
}

/// Writes `snapshot-N.snap` from `chunks` (one frame each; empty ones are skipped)
/// through a fsynced `.tmp` renamed into place, then deletes the segments below N and
/// older snapshots. Runs safely beside the [`JournalLog`] appending to segment N or later.
/// Chunks are taken one at a time, so they can be produced as they are written; an
/// `Err` chunk abandons the snapshot (the `.tmp` is removed). Returns the snapshot's
/// size in octets.
pub fn write_snapshot<E: std::fmt::Display>(
    point: SnapshotPoint,
    chunks: impl IntoIterator<Item = Result<Vec<u8>, E>>,
) -> Result<u64, LogError> {
    let (dir, n) = (point.dir, point.segment);
    let tmp = snapshot_path(&dir, n, "tmp");
    let write = || -> io::Result<u64> {
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(SNAPSHOT_MAGIC)?;
        let mut len = FRAME_HEADER;
        for chunk in chunks {
            let chunk = chunk.map_err(|e| io::Error::other(format!("encoding the snapshot: {e}")))?;
            if chunk.is_empty() {
                continue;
            }
            if chunk.len() > MAX_FRAME {
                let reason = format!("snapshot chunk of {} octets over 1 GiB", chunk.len());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
            }
            out.write_all(&frame_header(&chunk))?;
            out.write_all(&chunk)?;
            len += FRAME_HEADER + chunk.len() as u64;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(len)
    };
    let len = match write() {
        Ok(len) => len,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
    };
    let path = snapshot_path(&dir, n, "snap");
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(&dir)?;
    remove_replaced(&dir, n)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 1 << 20;

    /// Chunks that all encoded.
    fn ok(chunks: Vec<Vec<u8>>) -> impl Iterator<Item = Result<Vec<u8>, String>> {
        chunks.into_iter().map(Ok)
    }

    /// Opens `dir`, returning the replayed entries as `S:chunk` / `B:batch` strings.
    fn open_all(dir: &Path, segment_bytes: u64) -> (JournalLog, ReplayStats, Vec<String>) {
        let mut seen = Vec::new();
        let (log, stats) = JournalLog::open(dir, segment_bytes, |e| {
            seen.push(match e {
                Entry::Snapshot(p) => format!("S:{}", String::from_utf8_lossy(p)),
                Entry::Batch(p) => format!("B:{}", String::from_utf8_lossy(p)),
            });
            Ok(())
        })
        .expect("open");
        (log, stats, seen)
    }

    /// Appends and syncs each batch, then closes the log.
    fn write(dir: &Path, segment_bytes: u64, names: &[&str]) {
        let (mut log, _, _) = open_all(dir, segment_bytes);
        for name in names {
            log.append(name.as_bytes());
            log.sync().unwrap();
        }
    }

    fn files(dir: &Path, prefix: &str) -> Vec<String> {
        let names = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        let mut names: Vec<String> = names.filter(|n| n.starts_with(prefix)).collect();
        names.sort();
        names
    }

    fn seg(dir: &Path, n: u64) -> PathBuf {
        segment_path(dir, n)
    }

    #[test]
    fn a_spare_is_the_magic_and_zeros_direct_or_through_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        // Whole pages: O_DIRECT where the file system has it; otherwise the cache.
        for size in [3 * ZERO_CHUNK as u64 + PAGE, 5000] {
            let file = zero_fill(tmp.path(), size, &AtomicBool::new(false)).unwrap().unwrap();
            // The segment's own writes go through the cache, anywhere in it.
            file.write_all_at(b"x", 4097).unwrap();
            drop(file);
            let data = fs::read(tmp.path().join(SPARE)).unwrap();
            assert_eq!(data.len() as u64, size);
            assert_eq!(&data[..8], SEGMENT_MAGIC);
            assert_eq!(data[4097], b'x');
            assert!(data[8..4097].iter().chain(&data[4098..]).all(|&b| b == 0));
        }
    }

    #[test]
    fn empty_dir_opens_and_starts_segment_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let (log, stats, seen) = open_all(&dir, BIG);
        assert_eq!(
            (stats, seen.len(), log.bytes_since_snapshot()),
            (ReplayStats::default(), 0, 0)
        );
        assert_eq!(files(&dir, "journal-"), [format!("journal-{:020}.log", 1)]);
        assert_eq!(
            fs::metadata(seg(&dir, 1)).unwrap().len(),
            BIG,
            "created at its full size"
        );
    }

    #[test]
    fn batches_round_trip_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open_all(tmp.path(), BIG);
        log.append(b"a");
        log.append(b"");
        log.append(b"bb");
        assert_eq!(log.sync().unwrap(), 8 + 1 + 8 + 2);
        log.append(b"never synced");
        drop(log);
        let (log, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(seen, ["B:a", "B:bb"]);
        assert_eq!((stats.batches, stats.bytes, log.bytes_since_snapshot()), (2, 27, 27));
        assert_eq!(log.segment, 1, "appends continue in the preallocated segment");
    }

    #[test]
    fn rotation_by_size_and_replay_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 30, &["one", "two", "three", "four", "five"]);
        // magic + two ~12-octet frames reach 30: at least three segments.
        assert!(files(tmp.path(), "journal-").len() >= 3);
        let (_, stats, seen) = open_all(tmp.path(), 30);
        assert_eq!(seen, ["B:one", "B:two", "B:three", "B:four", "B:five"]);
        assert_eq!(stats.batches, 5);
    }

    #[test]
    fn snapshot_replays_first_and_replaces_older_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open_all(tmp.path(), 20);
        for b in ["old1", "old2", "old3", "at-point"] {
            log.append(b.as_bytes());
        }
        let point = log.snapshot_point().unwrap();
        let n = point.segment();
        assert_eq!(log.bytes_since_snapshot(), 0);
        log.append(b"new1");
        log.sync().unwrap();
        let old = seg(tmp.path(), n - 1);
        let old_bytes = fs::read(&old).unwrap();
        let written = write_snapshot(point, ok(vec![b"state1".to_vec(), Vec::new(), b"state2".to_vec()])).unwrap();
        assert_eq!(written, 8 + 14 + 14);
        assert_eq!(files(tmp.path(), "journal-")[0], format!("journal-{n:020}.log"));
        assert_eq!(files(tmp.path(), "snapshot-"), [format!("snapshot-{n:020}.snap")]);
        drop(log);
        fs::write(&old, old_bytes).unwrap(); // as if a crash came before the deletion
        let (mut log, stats, seen) = open_all(tmp.path(), 20);
        assert_eq!(seen, ["S:state1", "S:state2", "B:new1"]);
        assert_eq!((stats.snapshot_frames, stats.batches), (2, 1));
        assert!(!old.exists());
        // A second snapshot replaces the first.
        let point = log.snapshot_point().unwrap();
        let m = point.segment();
        write_snapshot(point, ok(vec![b"state3".to_vec()])).unwrap();
        assert_eq!(files(tmp.path(), "snapshot-"), [format!("snapshot-{m:020}.snap")]);
        drop(log);
        assert_eq!(open_all(tmp.path(), 20).2, ["S:state3"]);
    }

    #[test]
    fn a_chunk_that_failed_to_encode_abandons_the_snapshot_and_keeps_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open_all(tmp.path(), 20);
        log.append(b"before");
        let point = log.snapshot_point().unwrap();
        let n = point.segment();
        log.append(b"after");
        log.sync().unwrap();
        let chunks = vec![Ok(b"state1".to_vec()), Err("no encoding"), Ok(b"state2".to_vec())];
        let err = write_snapshot(point, chunks).unwrap_err().to_string();
        assert!(err.contains("encoding the snapshot: no encoding"), "{err}");
        assert!(files(tmp.path(), "snapshot-").is_empty());
        assert!(!snapshot_path(tmp.path(), n, "tmp").exists());
        drop(log);
        assert_eq!(open_all(tmp.path(), 20).2, ["B:before", "B:after"]);
    }

    #[test]
    fn interrupted_snapshot_is_ignored_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["a"]);
        let tmp_snap = snapshot_path(tmp.path(), 2, "tmp");
        fs::write(&tmp_snap, b"SMXSNP01 half written").unwrap();
        let (_, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!((seen, stats.snapshot_frames), (vec!["B:a".to_string()], 0));
        assert!(!tmp_snap.exists());
    }

    #[test]
    fn torn_tail_of_last_segment_is_truncated_and_later_appends_replay() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["kept1", "kept2", "torn"]);
        let file = OpenOptions::new().write(true).open(seg(tmp.path(), 1)).unwrap();
        file.set_len(8 + 2 * 13 + 10).unwrap();
        let (mut log, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(
            (seen, stats.truncated_bytes),
            (vec!["B:kept1".to_string(), "B:kept2".into()], 10)
        );
        assert_eq!(fs::metadata(seg(tmp.path(), 1)).unwrap().len(), 8 + 2 * 13);
        log.append(b"after");
        log.sync().unwrap();
        drop(log);
        let (_, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(seen, ["B:kept1", "B:kept2", "B:after"]);
        assert_eq!(stats.truncated_bytes, 0);
    }

    /// The data of `seg(dir, n)`: the file up to its last non-zero octet.
    fn data(dir: &Path, n: u64) -> Vec<u8> {
        let mut bytes = fs::read(seg(dir, n)).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes.truncate(end);
        bytes
    }

    #[test]
    fn crc_mismatch_at_the_tail_is_torn() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["good", "flipped"]);
        let mut bytes = data(tmp.path(), 1);
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(seg(tmp.path(), 1), bytes).unwrap(); // no zero tail: as before preallocation
        let (log, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(seen, ["B:good"]);
        assert_eq!((stats.truncated_bytes, stats.zero_tail_bytes), (8 + 7, 0));
        assert_eq!(log.segment, 2);
    }

    /// The normal state of the last segment: its frames, then the preallocated zeros.
    /// Replay stops at the zeros without calling them damage, and appends continue in
    /// the zero space of the same segment, across any number of reopens.
    #[test]
    fn a_preallocated_zero_tail_replays_exactly_the_frames_and_appends_continue() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["a", "bb"]);
        assert_eq!(fs::metadata(seg(tmp.path(), 1)).unwrap().len(), BIG);
        let (mut log, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(seen, ["B:a", "B:bb"]);
        let expected = ReplayStats {
            snapshot_frames: 0,
            batches: 2,
            bytes: 27,
            truncated_bytes: 0,
            zero_tail_bytes: BIG - 27,
        };
        assert_eq!(stats, expected);
        assert_eq!((log.segment, log.segment_len), (1, 27));
        log.append(b"ccc");
        log.sync().unwrap();
        drop(log);
        assert_eq!(files(tmp.path(), "journal-").len(), 1);
        assert_eq!(
            fs::metadata(seg(tmp.path(), 1)).unwrap().len(),
            BIG,
            "written in place, not grown"
        );
        let (_, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!(seen, ["B:a", "B:bb", "B:ccc"]);
        assert_eq!((stats.bytes, stats.truncated_bytes), (27 + 11, 0));
    }

    /// A torn frame is cut even with the zero tail behind it, also when its header
    /// is zero but octets after it are not.
    #[test]
    fn a_torn_frame_followed_by_zeros_is_cut() {
        let tear: [fn(&mut [u8]); 2] = [|frame| frame[9] ^= 1, |frame| frame[..8].fill(0)];
        for damage in tear {
            let tmp = tempfile::tempdir().unwrap();
            write(tmp.path(), BIG, &["kept", "torn"]);
            let mut bytes = fs::read(seg(tmp.path(), 1)).unwrap();
            damage(&mut bytes[8 + 12..8 + 24]);
            fs::write(seg(tmp.path(), 1), bytes).unwrap();
            let (mut log, stats, seen) = open_all(tmp.path(), BIG);
            assert_eq!(seen, ["B:kept"]);
            assert_eq!(
                (stats.bytes, stats.truncated_bytes),
                (20, 12),
                "the torn frame is damage"
            );
            assert_eq!(stats.zero_tail_bytes, BIG - 32);
            assert_eq!(
                fs::metadata(seg(tmp.path(), 1)).unwrap().len(),
                20,
                "cut, zeros and all"
            );
            assert_eq!(log.segment, 2, "appends do not go on after damage");
            log.append(b"after");
            log.sync().unwrap();
            drop(log);
            assert_eq!(open_all(tmp.path(), BIG).2, ["B:kept", "B:after"]);
        }
    }

    /// Rotation (by size, or at a snapshot point) leaves the finished segment exactly
    /// as long as its data, and the new one at its full size.
    #[test]
    fn a_finished_segment_has_exactly_its_data_length() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open_all(tmp.path(), 4096);
        log.append(b"abc");
        let point = log.snapshot_point().unwrap();
        assert_eq!(point.segment(), 2);
        assert_eq!(fs::metadata(seg(tmp.path(), 1)).unwrap().len(), 8 + 11, "zero tail cut");
        assert_eq!(fs::metadata(seg(tmp.path(), 2)).unwrap().len(), 4096);
        log.append(&[7; 3000]);
        log.sync().unwrap();
        log.append(&[8; 2000]); // runs past the preallocated end: the file grows
        log.sync().unwrap();
        assert_eq!(log.segment, 3);
        assert_eq!(fs::metadata(seg(tmp.path(), 2)).unwrap().len(), 8 + 3008 + 2008);
        assert_eq!(fs::metadata(seg(tmp.path(), 3)).unwrap().len(), 4096);
        drop(log);
        let (_, stats, _) = open_all(tmp.path(), 4096);
        assert_eq!((stats.batches, stats.truncated_bytes), (3, 0));
    }

    /// A spare left over (complete, partial, or even holding frames) is never replayed
    /// nor used as it is: open deletes it, and the segments made later are magic and
    /// zeros only.
    #[test]
    fn a_spare_left_at_open_is_deleted_not_replayed() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["real"]);
        let spare = tmp.path().join(SPARE);
        let mut ghost = SEGMENT_MAGIC.to_vec();
        ghost.extend_from_slice(&frame_header(b"ghost"));
        ghost.extend_from_slice(b"ghost");
        fs::write(&spare, &ghost).unwrap();
        let (mut log, stats, seen) = open_all(tmp.path(), BIG);
        assert_eq!((seen, stats.batches), (vec!["B:real".to_string()], 1));
        log.append(b"next");
        log.snapshot_point().unwrap(); // rotates onto the spare made after open
        assert_eq!(data(tmp.path(), 2), SEGMENT_MAGIC);
        drop(log);
        assert_eq!(open_all(tmp.path(), BIG).2, ["B:real", "B:next"]);
    }

    /// The directory as a crash leaves it at each step of a rotation: the spare
    /// zero-filled but not renamed (the finished segment cut or not yet), or renamed.
    /// Each opens to exactly the synced frames and goes on.
    #[test]
    fn a_crash_at_any_step_of_a_rotation_opens_to_the_synced_frames() {
        for step in ["before the cut", "after the cut", "after the rename"] {
            let tmp = tempfile::tempdir().unwrap();
            let (mut log, _, _) = open_all(tmp.path(), BIG);
            log.append(b"one");
            log.append(b"two");
            log.snapshot_point().unwrap();
            drop(log);
            // Undo the steps not reached: segment 2 back to the spare, segment 1's zeros back.
            if step != "after the rename" {
                fs::rename(seg(tmp.path(), 2), tmp.path().join(SPARE)).unwrap();
            }
            if step == "before the cut" {
                OpenOptions::new()
                    .write(true)
                    .open(seg(tmp.path(), 1))
                    .unwrap()
                    .set_len(BIG)
                    .unwrap();
            }
            let (mut log, stats, seen) = open_all(tmp.path(), BIG);
            assert_eq!(seen, ["B:one", "B:two"], "{step}");
            assert_eq!(stats.truncated_bytes, 0, "{step}");
            let expected_segment = if step == "before the cut" { 1 } else { 2 };
            assert_eq!(log.segment, expected_segment, "{step}");
            log.append(b"three");
            log.sync().unwrap();
            drop(log);
            assert_eq!(open_all(tmp.path(), BIG).2, ["B:one", "B:two", "B:three"], "{step}");
        }
    }

    /// Damage in a segment that is not the last is reported, never skipped: a bad
    /// frame, and a zero tail too (a finished segment is always cut to its data).
    #[test]
    fn damage_before_the_last_segment_is_corrupt() {
        let zero_tail = |b: &mut Vec<u8>| b.extend_from_slice(&[0; 64]);
        let flip = |b: &mut Vec<u8>| b[8 + 8] ^= 0x40; // first payload octet
        for (damage, offset) in [(&flip as &dyn Fn(&mut Vec<u8>), 8), (&zero_tail, 8 + 13)] {
            let tmp = tempfile::tempdir().unwrap();
            write(tmp.path(), 16, &["first", "second"]); // one frame fills a segment
            assert_eq!(files(tmp.path(), "journal-").len(), 3);
            let mut bytes = fs::read(seg(tmp.path(), 1)).unwrap();
            assert_eq!(bytes.len(), 8 + 13);
            damage(&mut bytes);
            fs::write(seg(tmp.path(), 1), bytes).unwrap();
            match JournalLog::open(tmp.path(), 16, |_| Ok(())) {
                Err(LogError::Corrupt { path, offset: at, .. }) => assert_eq!((path, at), (seg(tmp.path(), 1), offset)),
                other => panic!("expected Corrupt, got {:?}", other.map(|(_, s)| s)),
            }
        }
    }

    #[test]
    fn damaged_snapshot_and_missing_segment_are_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _, _) = open_all(tmp.path(), BIG);
        let point = log.snapshot_point().unwrap();
        let n = point.segment();
        write_snapshot(point, ok(vec![b"state".to_vec()])).unwrap();
        drop(log);
        write(tmp.path(), 10, &["x"]); // fills segment n: on to n + 1
        assert!(seg(tmp.path(), n + 1).exists());
        let open = || JournalLog::open(tmp.path(), BIG, |_| Ok(())).expect_err("must fail");
        let snap = snapshot_path(tmp.path(), n, "snap");
        let full = fs::read(&snap).unwrap();
        fs::write(&snap, &full[..full.len() - 1]).unwrap();
        assert!(matches!(open(), LogError::Corrupt { ref path, .. } if *path == snap));
        fs::write(&snap, &full).unwrap();
        fs::remove_file(seg(tmp.path(), n)).unwrap();
        assert!(matches!(open(), LogError::Corrupt { ref path, .. } if *path == seg(tmp.path(), n + 1)));
    }

    #[test]
    fn callback_error_stops_open() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), BIG, &["ok", "bad", "never"]);
        let mut seen = 0;
        let result = JournalLog::open(tmp.path(), BIG, |e| {
            seen += 1;
            match e {
                Entry::Batch(b"bad") => Err("undecodable".to_string()),
                _ => Ok(()),
            }
        });
        assert!(matches!(result, Err(LogError::Replay(ref m)) if m == "undecodable"));
        assert_eq!(seen, 2);
    }
}
