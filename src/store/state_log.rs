//! Statistics and top lists in an append-only log beside the database.
//!
//! A commit changes the statistics of every feature that fired and the list of every feature an
//! example entered: at 131k latents that is hundreds of thousands of small records per commit,
//! which sled writes at a few MB/s and keeps several copies of. Here they are one sequential
//! write: each commit appends a frame holding its changed records to `state-<generation>.log`,
//! fsyncs it, and only then commits the database batch whose `w` record ([`StatePointer`]) names
//! the generation and its committed length. Bytes past that length (a commit killed before the
//! database batch) are ignored on read and cut off before the next append. When a log outgrows
//! twice its live records (plus [`CHECKPOINT_SLACK`]), the commit writes one full frame to the next
//! generation instead; the generation before the previous one is deleted then, so a database
//! that lost its last commits still finds the log it names.
//!
//! A frame: `GLSF`, record count u32, payload bytes u64, the payload, then xxh3 of everything
//! before it (u64). A record: kind u8 (`s` statistics, `t` top list, `r` range sample), feature
//! u32, length u32, the bytes (encoded as the `s/`, `t/` and `r/` records of the schema in
//! `store`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::integrity::sync_parent;
use super::records::{PREFIX_RANGE, PREFIX_STATS, PREFIX_TOP, key};

/// Database key of the [`StatePointer`].
pub(crate) const KEY_STATE: &[u8] = b"w";

/// A log is checkpointed once it exceeds twice its live records plus this many bytes.
pub(crate) const CHECKPOINT_SLACK: u64 = 64 << 20;

const MAGIC: &[u8; 4] = b"GLSF";
const HEADER: usize = 16;
/// Bytes before a record's value: kind, feature, length.
pub(crate) const RECORD_HEADER: usize = 9;
const TRAILER: usize = 8;

/// Which log, and how much of it, the committed state is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePointer {
    /// Generation of the log file (0: no log yet).
    pub generation: u64,
    /// Committed bytes of that log.
    pub length: u64,
}

impl StatePointer {
    /// The pointer a write of `frame_len` bytes leaves: appended to this log, or the whole of
    /// the next generation's with `checkpoint` (always for the first log); nothing is written
    /// for an empty frame.
    pub fn after(self, frame_len: u64, checkpoint: bool) -> StatePointer {
        if frame_len == 0 {
            self
        } else if checkpoint || self.generation == 0 {
            StatePointer {
                generation: self.generation + 1,
                length: frame_len,
            }
        } else {
            StatePointer {
                generation: self.generation,
                length: self.length + frame_len,
            }
        }
    }

    /// Whether a write of `frame_len` bytes from here starts the next generation.
    fn starts_generation(self, frame_len: u64, checkpoint: bool) -> bool {
        self.after(frame_len, checkpoint).generation != self.generation
    }
}

/// The kinds of record the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A feature's statistics (`s/`).
    Stats,
    /// A feature's top list (`t/`).
    Top,
    /// A feature's range sample (`r/`).
    Range,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Stats => b's',
            Kind::Top => b't',
            Kind::Range => b'r',
        }
    }

    /// The database-style key of feature `f`'s record, which the commit digest hashes.
    pub(crate) fn key(self, f: u32) -> Vec<u8> {
        match self {
            Kind::Stats => key(PREFIX_STATS, &[f]),
            Kind::Top => key(PREFIX_TOP, &[f]),
            Kind::Range => key(PREFIX_RANGE, &[f]),
        }
    }
}

/// Path of log `generation` in store folder `dir`.
pub(crate) fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("state-{generation:06}.log"))
}

/// Whether `name` is a state log's file name.
pub(crate) fn is_log_name(name: &str) -> bool {
    name.starts_with("state-") && name.ends_with(".log")
}

/// A frame being built: records appended in any order, later ones replacing earlier ones.
#[derive(Default)]
pub(crate) struct Frame {
    bytes: Vec<u8>,
    records: u32,
}

impl Frame {
    /// Append feature `f`'s record of `kind`.
    pub fn push(&mut self, kind: Kind, f: u32, value: &[u8]) {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&[0; HEADER]);
        }
        self.bytes.push(kind.byte());
        self.bytes.extend(f.to_le_bytes());
        self.bytes.extend((value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value);
        self.records += 1;
    }

    /// Records pushed.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// The frame's bytes on disk (empty if no record was pushed).
    pub fn finish(mut self) -> Vec<u8> {
        if self.bytes.is_empty() {
            return self.bytes;
        }
        let payload = (self.bytes.len() - HEADER) as u64;
        self.bytes[..4].copy_from_slice(MAGIC);
        self.bytes[4..8].copy_from_slice(&self.records.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&payload.to_le_bytes());
        let sum = twox_hash::XxHash3_64::oneshot(&self.bytes);
        self.bytes.extend(sum.to_le_bytes());
        self.bytes
    }
}

/// The committed records of a store, by feature: raw encoded values, decoded when read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct StateRecords {
    pub stats: Vec<Option<Box<[u8]>>>,
    pub tops: Vec<Option<Box<[u8]>>>,
    pub ranges: Vec<Option<Box<[u8]>>>,
}

impl StateRecords {
    fn new(num_latents: usize) -> Self {
        Self {
            stats: vec![None; num_latents],
            tops: vec![None; num_latents],
            ranges: vec![None; num_latents],
        }
    }

    /// The record of `kind` for feature `f`.
    pub fn get(&self, kind: Kind, f: u32) -> Option<&[u8]> {
        self.slots(kind).get(f as usize).and_then(|v| v.as_deref())
    }

    /// Every record as (kind, feature, value): statistics, then top lists, then range
    /// samples, each by feature.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, u32, &[u8])> {
        self.of(Kind::Stats)
            .chain(self.of(Kind::Top))
            .chain(self.of(Kind::Range))
    }

    fn slots(&self, kind: Kind) -> &[Option<Box<[u8]>>] {
        match kind {
            Kind::Stats => &self.stats,
            Kind::Top => &self.tops,
            Kind::Range => &self.ranges,
        }
    }

    /// The records of `kind` as (kind, feature, value), by feature.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = (Kind, u32, &[u8])> {
        self.slots(kind)
            .iter()
            .enumerate()
            .filter_map(move |(f, v)| v.as_deref().map(|v| (kind, f as u32, v)))
    }

    /// Apply the records of one frame's payload.
    fn apply(&mut self, mut payload: &[u8], records: u32) -> Result<()> {
        for _ in 0..records {
            let Some(head) = payload.get(..RECORD_HEADER) else {
                bail!("a frame ends inside a record header");
            };
            let f = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(head[5..9].try_into().expect("4 bytes")) as usize;
            let Some(value) = payload.get(RECORD_HEADER..RECORD_HEADER + len) else {
                bail!("a frame ends inside the record of feature {f}");
            };
            let slot = match head[0] {
                b's' => &mut self.stats,
                b't' => &mut self.tops,
                b'r' => &mut self.ranges,
                other => bail!("a record of unknown kind {other}"),
            };
            let Some(slot) = slot.get_mut(f as usize) else {
                bail!(
                    "a record of feature {f}, past the store's {} latents",
                    self.stats.len()
                );
            };
            *slot = Some(value.into());
            payload = &payload[RECORD_HEADER + len..];
        }
        if !payload.is_empty() {
            bail!("a frame holds bytes past its records");
        }
        Ok(())
    }
}

/// Read the committed state named by `pointer` in store folder `dir`.
pub(crate) fn replay(
    dir: &Path,
    pointer: StatePointer,
    num_latents: usize,
) -> Result<StateRecords> {
    let mut state = StateRecords::new(num_latents);
    if pointer.generation == 0 {
        return Ok(state);
    }
    let path = log_path(dir, pointer.generation);
    let ctx = || format!("the state log {}", path.display());
    let mut file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", ctx()))?;
    let mut bytes = Vec::with_capacity(pointer.length as usize);
    (&mut file)
        .take(pointer.length)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", ctx()))?;
    if (bytes.len() as u64) < pointer.length {
        bail!(
            "{} holds {} bytes, but the store committed {}",
            ctx(),
            bytes.len(),
            pointer.length
        );
    }
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let frame = (|| {
            if rest.len() < HEADER + TRAILER || &rest[..4] != MAGIC {
                bail!("no frame starts there");
            }
            let records = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            let payload = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes")) as usize;
            let end = HEADER + payload;
            let Some(sum) = rest.get(end..end + TRAILER) else {
                bail!("the frame runs past the committed length");
            };
            if twox_hash::XxHash3_64::oneshot(&rest[..end]).to_le_bytes() != sum {
                bail!("the frame's checksum does not match");
            }
            state.apply(&rest[HEADER..end], records)?;
            Ok(end + TRAILER)
        })()
        .with_context(|| format!("{} is damaged at byte {at}", ctx()))?;
        at += frame;
    }
    Ok(state)
}

/// Write `frame` after the committed part of the log `pointer` names (or, with `checkpoint`,
/// as the whole of the next generation's log), durably, and return the pointer to commit.
pub(crate) fn append(
    dir: &Path,
    pointer: StatePointer,
    frame: &[u8],
    checkpoint: bool,
) -> Result<StatePointer> {
    let after = pointer.after(frame.len() as u64, checkpoint);
    if frame.is_empty() {
        return Ok(after);
    }
    let next = if pointer.starts_generation(frame.len() as u64, checkpoint) {
        StatePointer {
            generation: after.generation,
            length: 0,
        }
    } else {
        pointer
    };
    let path = log_path(dir, next.generation);
    let ctx = || format!("cannot write the state log {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(ctx)?;
    // Drop what a killed commit may have left past the committed length.
    file.set_len(next.length).with_context(ctx)?;
    file.seek(SeekFrom::Start(next.length)).with_context(ctx)?;
    file.write_all(frame).with_context(ctx)?;
    file.sync_all().with_context(ctx)?;
    if next.length == 0 {
        sync_parent(&path).with_context(ctx)?;
    }
    Ok(after)
}

/// Delete the logs older than the one before `pointer`'s (kept for a database that lost its
/// last commit); best effort, as a leftover log is only disk space.
pub(crate) fn prune(dir: &Path, pointer: StatePointer) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let generation = name
            .strip_prefix("state-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if generation.is_some_and(|g| g + 1 < pointer.generation) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(records: &[(Kind, u32, &[u8])]) -> Vec<u8> {
        let mut f = Frame::default();
        for &(kind, id, v) in records {
            f.push(kind, id, v);
        }
        f.finish()
    }

    #[test]
    fn frames_replay_in_order_and_a_torn_tail_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p0 = StatePointer::default();
        assert_eq!(replay(dir, p0, 4).unwrap(), StateRecords::new(4));
        let p1 = append(
            dir,
            p0,
            &frame(&[(Kind::Stats, 1, b"a"), (Kind::Top, 1, b"xy")]),
            false,
        )
        .unwrap();
        assert_eq!(p1.generation, 1);
        let p2 = append(
            dir,
            p1,
            &frame(&[(Kind::Stats, 1, b"b"), (Kind::Stats, 3, b"")]),
            false,
        )
        .unwrap();
        let state = replay(dir, p2, 4).unwrap();
        assert_eq!(state.get(Kind::Stats, 1), Some(&b"b"[..]));
        assert_eq!(state.get(Kind::Top, 1), Some(&b"xy"[..]));
        assert_eq!(state.get(Kind::Stats, 3), Some(&b""[..]));
        assert_eq!(state.get(Kind::Top, 3), None);
        // The older pointer still reads the older state, whatever follows it.
        assert_eq!(
            replay(dir, p1, 4).unwrap().get(Kind::Stats, 1),
            Some(&b"a"[..])
        );
        // A frame written but not committed is cut off by the next append.
        let lost = append(dir, p2, &frame(&[(Kind::Stats, 2, b"lost")]), false).unwrap();
        assert!(lost.length > p2.length);
        let p3 = append(dir, p2, &frame(&[(Kind::Stats, 0, b"z")]), false).unwrap();
        let state = replay(dir, p3, 4).unwrap();
        assert_eq!(state.get(Kind::Stats, 2), None);
        assert_eq!(state.get(Kind::Stats, 0), Some(&b"z"[..]));
        assert_eq!(
            std::fs::metadata(log_path(dir, 1)).unwrap().len(),
            p3.length
        );
    }

    #[test]
    fn checkpoints_start_a_generation_and_prune_keeps_the_previous_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut p = StatePointer::default();
        for g in 0..4u32 {
            p = append(dir, p, &frame(&[(Kind::Top, g, b"full")]), true).unwrap();
            prune(dir, p);
        }
        assert_eq!(p.generation, 4);
        assert!(log_path(dir, 3).exists() && log_path(dir, 4).exists());
        assert!(!log_path(dir, 2).exists() && !log_path(dir, 1).exists());
        let state = replay(dir, p, 4).unwrap();
        assert_eq!(state.iter().count(), 1);
        assert!(is_log_name("state-000004.log") && !is_log_name("db"));
    }

    #[test]
    fn damage_is_an_error_naming_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = append(
            dir,
            StatePointer::default(),
            &frame(&[(Kind::Stats, 1, b"abc")]),
            false,
        )
        .unwrap();
        let path = log_path(dir, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let msg = format!("{:#}", replay(dir, p, 4).unwrap_err());
        assert!(
            msg.contains("checksum") && msg.contains("state-000001.log"),
            "{msg}"
        );
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let msg = format!("{:#}", replay(dir, p, 4).unwrap_err());
        assert!(msg.contains("committed"), "{msg}");
        let p = append(
            dir,
            StatePointer::default(),
            &frame(&[(Kind::Stats, 9, b"x")]),
            false,
        )
        .unwrap();
        let msg = format!("{:#}", replay(dir, p, 4).unwrap_err());
        assert!(msg.contains("feature 9"), "{msg}");
    }
}
