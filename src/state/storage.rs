//! State that survives a restart (`--storage.path DIR`): for every image, the last good
//! member list and what resuming needs (name, source, last success, watched members,
//! change counts), and what each target last discovered.
//!
//! The format is one versioned JSON file, `DIR/state.json`, written whole by
//! write-temp, fsync, rename, fsync-dir: a `kill -9` at any moment leaves the previous
//! or the new file, never a torn one. A single file (not an embedded database) because
//! the state is one small document written at most once a poll cycle and read once at
//! start; JSON because an operator can read it. It is written on a blocking thread,
//! only after a cycle that changed something, and is only as big as the data.
//!
//! A file that cannot be used never stops the exporter: unreadable, not a regular file
//! (a FIFO, a device, a directory), larger than its cap ([`max_state_bytes`]), corrupt,
//! truncated, a future version, or holding what no exporter writes (a time outside the
//! years 2000–2199, more members than the config's caps, more changes than are kept, a
//! count past 2^53, a member string longer than the API decoder accepts). It is moved
//! aside (`state.json.bad-<unix time>`; a rename, which opens nothing, so a FIFO is
//! moved as safely as a file), a warning names it and why,
//! `ims_exporter_state_restore_successful` is 0, and the exporter starts clean. This
//! module reads and writes values only; the daemon decides when, off the async workers
//! and with a deadline.
//!
//! Only one process uses a directory: [`Storage::lock`] takes an exclusive `flock` on
//! `DIR/lock` (which holds the holder's PID) for the process's life; the kernel drops
//! it when the process ends, however it ends. Member IDs and share history are not
//! public: the directory is created 0700 (an existing one is left as it is) and the
//! state file 0600.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::files::{STATE_BASE_BYTES, STATE_BYTES_PER_MEMBER};
use crate::ids::{IdError, ImageId, MemberId, ProjectId, Source};
use crate::ims::error::excerpt;
use crate::ims::model::{MAX_MEMBER_ID_BYTES, MAX_MEMBER_LABEL_BYTES};
use crate::state::{
    label, ChangeEvent, ChangeKind, ImageKey, ImageMeta, ImageState, Label, MemberCounts,
    MemberRecord, MemberSet, Snapshot, MAX_CHANGES,
};
use crate::timestamp;

const FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// Bumped when the format changes incompatibly; a newer file is not guessed at.
pub const VERSION: u32 = 1;
/// Longest region read back (a config's region is a short name like `cn-north-4`).
const MAX_REGION_BYTES: usize = 1024;
/// Most watched members one image may have: a config (at most 4 MiB) cannot name
/// more, at four bytes an entry.
const MAX_WATCHED: usize = (crate::files::MAX_CONFIG_BYTES / 4) as usize;
/// Largest count read back: beyond it an `f64` sample would lose counts, and an
/// increment could overflow.
const MAX_COUNT: u64 = 1 << 53;
/// Parse errors are cut to this many characters (serde quotes the offending string).
const MAX_ERROR_CHARS: usize = 300;

/// The member caps of the config (`max_members_per_image`, `max_members_total`): a
/// state file holding more members is refused, and its size cap derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub members_per_image: usize,
    pub members_total: usize,
}

/// The largest state file read: `STATE_BASE_BYTES` (16 MiB) + `STATE_BYTES_PER_MEMBER`
/// (512 bytes) × `max_members_total`, so 16 MiB + 512 MB with the default million
/// members. A member takes about 150 bytes in the file (an organization member with
/// its URN about 250), so a file this exporter wrote fits with room to spare, and a
/// larger one is refused before it is read.
pub fn max_state_bytes(members_total: usize) -> u64 {
    STATE_BASE_BYTES.saturating_add(STATE_BYTES_PER_MEMBER.saturating_mul(members_total as u64))
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a regular file but {kind}")]
    NotRegular { file: String, kind: &'static str },
    #[error(
        "{file}: {size} bytes, larger than the {cap} bytes a state file may have \
         ({} MiB + {STATE_BYTES_PER_MEMBER} bytes for each of max_members_total's \
         {members_total} members)",
        STATE_BASE_BYTES >> 20
    )]
    TooLarge {
        file: String,
        size: u64,
        cap: u64,
        members_total: usize,
    },
    #[error("{file}: not a state file: {message}")]
    NotStateFile { file: String, message: String },
    #[error("{file}: format version {version} (this exporter reads {VERSION})")]
    Version { file: String, version: u32 },
    #[error("{file}: corrupt: {message}")]
    Corrupt { file: String, message: String },
    #[error("{file}: {source}")]
    Invalid { file: String, source: Invalid },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
}

/// A value no exporter writes, and where it is (`images[3].members[7].created_at`).
#[derive(Debug, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct Invalid {
    pub at: String,
    pub problem: Problem,
}

impl Invalid {
    fn new(at: impl Into<String>, problem: Problem) -> Invalid {
        Invalid {
            at: at.into(),
            problem,
        }
    }

    /// The same problem, located under `prefix` (called on the error path only).
    fn under(mut self, prefix: impl std::fmt::Display) -> Invalid {
        self.at = format!("{prefix}.{}", self.at);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0:?} is not a time in the years 2000-2199")]
    Time(f64),
    #[error("{len} bytes, more than {max}")]
    TooLong { len: usize, max: usize },
    #[error("empty")]
    Empty,
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{0}, more than 2^53")]
    Count(u64),
    #[error("{count}, more than {limit} ({max})")]
    TooMany {
        count: usize,
        max: usize,
        limit: &'static str,
    },
    #[error("the same image as an earlier entry")]
    Duplicate,
}

/// Why the storage directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "--storage.path {dir}: locked by another ims-exporter{}; two processes must not \
         share a storage directory",
        holder(*.pid)
    )]
    Held { dir: String, pid: Option<u32> },
    #[error("--storage.path {dir}: cannot lock it: {reason}")]
    Failed { dir: String, reason: String },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
}

/// The storage directory's lock: held until dropped, or until the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    written_at: f64,
    images: Vec<StoredImage>,
    #[serde(default)]
    discovered: Vec<StoredDiscovery>,
    /// The most recent member changes, oldest first (absent in files written before
    /// the share browser showed them).
    #[serde(default)]
    changes: Vec<StoredChange>,
}

/// One change. An `image_unmonitored` change has empty member fields and the image's
/// `members` (and `unexpected_members`, unless unknown); an exporter that does not know
/// the kind drops it.
#[derive(Serialize, Deserialize)]
struct StoredChange {
    time: f64,
    change: String,
    region: String,
    project_id: String,
    image_id: String,
    image_name: String,
    member_id: String,
    member_type: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    old_status: Option<String>,
    unexpected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    members: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unexpected_members: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct StoredImage {
    region: String,
    project_id: String,
    image_id: String,
    name: String,
    source: String,
    last_success: Option<f64>,
    /// Whether the list is the whole member list (`list_members: true`).
    complete: bool,
    members: Vec<StoredMember>,
    #[serde(default)]
    watched: BTreeMap<String, bool>,
    #[serde(default)]
    changes: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct StoredMember {
    id: String,
    #[serde(rename = "type")]
    member_type: String,
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    urn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<f64>,
}

/// What one target last discovered: (image ID, name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredDiscovery {
    pub region: String,
    pub project_id: String,
    pub images: Vec<(String, String)>,
}

/// What a start restores.
#[derive(Debug, Default)]
pub struct Restored {
    pub images: Vec<ImageState>,
    pub discovered: Vec<StoredDiscovery>,
    /// The most recent member changes, oldest first.
    pub changes: Vec<ChangeEvent>,
    /// When the file was written (Unix seconds).
    pub written_at: f64,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
    limits: Limits,
}

impl Storage {
    pub fn new(dir: &Path, limits: Limits) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
            limits,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The state file's size cap ([`max_state_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        max_state_bytes(self.limits.members_total)
    }

    /// Creates the directory (0700) if it is missing and locks it for this process:
    /// an exclusive, non-blocking `flock` on `DIR/lock`, into which the PID is
    /// written. Blocking: call it from a blocking thread.
    pub fn lock(&self) -> Result<DirLock, LockError> {
        let dir = self.dir.display().to_string();
        let failed = |e: std::io::Error| LockError::Failed {
            dir: dir.clone(),
            reason: e.to_string(),
        };
        create_dir(&self.dir).map_err(failed)?;
        let mut file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK_FILE))
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder wrote its PID (unless it is just starting).
                let mut text = String::new();
                let _ = (&file).take(32).read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.clone(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        file.set_len(0).map_err(failed)?;
        writeln!(file, "{}", std::process::id()).map_err(failed)?;
        Ok(DirLock { _file: file })
    }

    /// Reads the state file. `Ok(None)` when there is none yet. Blocking, and it may
    /// hang on a hung mount: call it from a blocking thread, with a deadline.
    pub fn load(&self) -> Result<Option<Restored>, StorageError> {
        let path = self.file();
        let file = || path.display().to_string();
        // stat opens nothing, so a FIFO or a device is refused without blocking on it.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StorageError::Read {
                    file: file(),
                    source: e,
                })
            }
        };
        if !meta.is_file() {
            return Err(StorageError::NotRegular {
                file: file(),
                kind: kind_of(&meta.file_type()),
            });
        }
        let cap = self.max_bytes();
        if meta.len() > cap {
            return Err(StorageError::TooLarge {
                file: file(),
                size: meta.len(),
                cap,
                members_total: self.limits.members_total,
            });
        }
        // Capped again while reading: the file may have grown since.
        let bytes = match crate::files::read_capped(&path, cap) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StorageError::Read {
                    file: file(),
                    source: e,
                })
            }
        };
        // The version first, so that a newer format is named as such.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::NotStateFile {
                file: file(),
                message: excerpt(&e.to_string(), MAX_ERROR_CHARS),
            })?;
        if v.version != VERSION {
            return Err(StorageError::Version {
                file: file(),
                version: v.version,
            });
        }
        let parsed: StateFile =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                file: file(),
                message: excerpt(&e.to_string(), MAX_ERROR_CHARS),
            })?;
        drop(bytes);
        restore_file(parsed, self.limits)
            .map(Some)
            .map_err(|source| StorageError::Invalid {
                file: file(),
                source,
            })
    }

    /// Moves an unusable state file aside, so that it is kept for a post-mortem and
    /// the next write does not overwrite it. Returns where it went. A rename opens
    /// nothing: a FIFO or a symbolic link (to a device) is moved, not read.
    pub fn move_aside(&self, now_unix: f64) -> Option<PathBuf> {
        let to = self.dir.join(format!("{FILE}.bad-{}", now_unix as u64));
        std::fs::rename(self.file(), &to).ok().map(|_| to)
    }

    /// Writes `snapshot` (and the discovered sets) crash-safely, mode 0600. Returns
    /// the bytes written. Blocking: call it from a blocking thread.
    pub fn write(
        &self,
        snapshot: &Snapshot,
        discovered: &[StoredDiscovery],
        changes: &[Arc<ChangeEvent>],
        now_unix: f64,
    ) -> Result<usize, StorageError> {
        let file = StateFile {
            version: VERSION,
            written_at: now_unix,
            images: snapshot.images.iter().filter_map(store_image).collect(),
            discovered: discovered.to_vec(),
            changes: changes.iter().map(|c| store_change(c)).collect(),
        };
        let path = self.file();
        let err = |source| StorageError::Write {
            file: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| err(std::io::Error::other(e)))?;
        create_dir(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        // A temporary file left by an older version keeps its mode when reopened.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(bytes.len())
    }
}

/// Creates `dir` and its missing parents, 0700 (an existing directory is left as it is).
fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Options that create a file readable by its owner only.
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// What a path that is not a regular file is, for the warning.
fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "something else"
    }
}

fn store_image(s: &Arc<ImageState>) -> Option<StoredImage> {
    let members = s.members.as_ref()?;
    Some(StoredImage {
        region: s.key.region.to_string(),
        project_id: s.key.project_id.to_string(),
        image_id: s.key.image_id.to_string(),
        name: s.meta.name.to_string(),
        source: s.meta.source.as_str().to_string(),
        last_success: s.last_success_unix,
        complete: members.complete,
        members: members
            .members
            .iter()
            .map(|m| StoredMember {
                id: m.member_id.clone(),
                member_type: m.member_type.to_string(),
                status: m.status.to_string(),
                urn: m.urn.clone(),
                created_at: m.created_at,
                updated_at: m.updated_at,
            })
            .collect(),
        watched: s.watched.clone(),
        changes: s
            .changes
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
    })
}

/// Checks a parsed file against what this exporter writes, and converts it; the
/// first value out of bounds refuses the whole file.
fn restore_file(file: StateFile, limits: Limits) -> Result<Restored, Invalid> {
    let written_at = time("written_at", file.written_at)?;
    let mut total = 0usize;
    let mut seen = HashSet::new();
    let mut images = Vec::with_capacity(file.images.len());
    for (i, image) in file.images.into_iter().enumerate() {
        total = total.saturating_add(image.members.len());
        if total > limits.members_total {
            let problem = Problem::TooMany {
                count: total,
                max: limits.members_total,
                limit: "max_members_total",
            };
            return Err(Invalid::new(format!("images[{i}].members"), problem));
        }
        let state = restore_image(image, limits).map_err(|e| e.under(format!("images[{i}]")))?;
        if !seen.insert(state.key.clone()) {
            return Err(Invalid::new(format!("images[{i}]"), Problem::Duplicate));
        }
        images.push(state);
    }
    at_most(
        "changes",
        file.changes.len(),
        MAX_CHANGES,
        "the changes kept",
    )?;
    let mut changes = Vec::with_capacity(file.changes.len());
    for (i, c) in file.changes.into_iter().enumerate() {
        if let Some(event) = restore_change(c).map_err(|e| e.under(format!("changes[{i}]")))? {
            changes.push(event);
        }
    }
    Ok(Restored {
        images,
        discovered: file.discovered,
        changes,
        written_at,
    })
}

fn restore_image(i: StoredImage, limits: Limits) -> Result<ImageState, Invalid> {
    let key = image_key(&i.region, &i.project_id, &i.image_id)?;
    let last_success = opt_time("last_success", i.last_success)?;
    at_most(
        "members",
        i.members.len(),
        limits.members_per_image,
        "max_members_per_image",
    )?;
    at_most(
        "watched",
        i.watched.len(),
        MAX_WATCHED,
        "a config's watched members",
    )?;
    for id in i.watched.keys() {
        text("watched", id, MAX_MEMBER_ID_BYTES)?;
        MemberId::parse(id).map_err(|e| Invalid::new("watched", e.into()))?;
    }
    let mut kinds = BTreeMap::new();
    for (k, v) in i.changes {
        // A kind this exporter does not know is dropped, not guessed at.
        if let Some(kind) = ChangeKind::parse(&k).filter(|k| k.is_member()) {
            kinds.insert(kind, count(|| format!("changes.{k}"), v)?);
        }
    }
    let source = if i.source == Source::Discovery.as_str() {
        Source::Discovery
    } else {
        Source::Config
    };
    let meta = ImageMeta {
        name: i.name.into(),
        source,
    };
    let mut records = Vec::with_capacity(i.members.len());
    for (j, m) in i.members.into_iter().enumerate() {
        records.push(restore_member(m).map_err(|e| e.under(format!("members[{j}]")))?);
    }
    let mut set = MemberSet::from_records(records, 0);
    set.complete = i.complete;
    let mut state = ImageState::new(key, meta);
    state.members = Some(Arc::new(set));
    state.last_success_unix = last_success;
    state.watched = i.watched;
    state.changes = kinds;
    Ok(state)
}

fn restore_member(m: StoredMember) -> Result<MemberRecord, Invalid> {
    member_id("id", &m.id)?;
    text("urn", &m.urn, MAX_MEMBER_ID_BYTES)?;
    text("type", &m.member_type, MAX_MEMBER_LABEL_BYTES)?;
    text("status", &m.status, MAX_MEMBER_LABEL_BYTES)?;
    Ok(MemberRecord {
        created_at: opt_time("created_at", m.created_at)?,
        updated_at: opt_time("updated_at", m.updated_at)?,
        member_id: m.id,
        member_type: label(Some(&m.member_type)),
        status: label(Some(&m.status)),
        urn: m.urn,
        unexpected: true,
    })
}

/// The key of a restored image or change: as the config validated it.
fn image_key(region: &str, project_id: &str, image_id: &str) -> Result<ImageKey, Invalid> {
    text("region", region, MAX_REGION_BYTES)?;
    // Cut first: an ID error quotes the value.
    text("project_id", project_id, 64)?;
    text("image_id", image_id, 64)?;
    ProjectId::parse(project_id).map_err(|e| Invalid::new("project_id", e.into()))?;
    ImageId::parse(image_id).map_err(|e| Invalid::new("image_id", e.into()))?;
    Ok(ImageKey {
        region: region.into(),
        project_id: project_id.into(),
        image_id: image_id.into(),
    })
}

fn time(at: &'static str, t: f64) -> Result<f64, Invalid> {
    if timestamp::in_range(t) {
        Ok(t)
    } else {
        Err(Invalid::new(at, Problem::Time(t)))
    }
}

fn opt_time(at: &'static str, t: Option<f64>) -> Result<Option<f64>, Invalid> {
    t.map(|t| time(at, t)).transpose()
}

fn text(at: &'static str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        let problem = Problem::TooLong { len: s.len(), max };
        return Err(Invalid::new(at, problem));
    }
    Ok(())
}

fn member_id(at: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(at, Problem::Empty));
    }
    text(at, s, MAX_MEMBER_ID_BYTES)
}

fn count(at: impl FnOnce() -> String, n: u64) -> Result<u64, Invalid> {
    if n > MAX_COUNT {
        return Err(Invalid::new(at(), Problem::Count(n)));
    }
    Ok(n)
}

fn at_most(at: &'static str, n: usize, max: usize, limit: &'static str) -> Result<(), Invalid> {
    if n > max {
        let problem = Problem::TooMany {
            count: n,
            max,
            limit,
        };
        return Err(Invalid::new(at, problem));
    }
    Ok(())
}

fn store_change(c: &ChangeEvent) -> StoredChange {
    StoredChange {
        time: c.time_unix,
        change: c.kind.as_str().to_string(),
        region: c.key.region.to_string(),
        project_id: c.key.project_id.to_string(),
        image_id: c.key.image_id.to_string(),
        image_name: c.image_name.to_string(),
        member_id: c.member_id.clone(),
        member_type: c.member_type.to_string(),
        status: c.status.to_string(),
        old_status: c.old_status.as_ref().map(|s| s.to_string()),
        unexpected: c.unexpected,
        members: c.counts.map(|n| n.members),
        unexpected_members: c.counts.and_then(|n| n.unexpected),
    }
}

/// An event of a kind this exporter does not know is dropped (`None`), not guessed at;
/// so is an image event without its member count.
fn restore_change(c: StoredChange) -> Result<Option<ChangeEvent>, Invalid> {
    let Some(kind) = ChangeKind::parse(&c.change) else {
        return Ok(None);
    };
    let time_unix = time("time", c.time)?;
    let key = image_key(&c.region, &c.project_id, &c.image_id)?;
    if kind.is_member() {
        member_id("member_id", &c.member_id)?;
    } else {
        text("member_id", &c.member_id, MAX_MEMBER_ID_BYTES)?;
    }
    text("member_type", &c.member_type, MAX_MEMBER_LABEL_BYTES)?;
    text("status", &c.status, MAX_MEMBER_LABEL_BYTES)?;
    if let Some(old) = &c.old_status {
        text("old_status", old, MAX_MEMBER_LABEL_BYTES)?;
    }
    // A member change names a member; an image event has none (empty fields).
    let as_label = |s: &str| -> Label {
        if kind.is_member() {
            label(Some(s))
        } else {
            Label::Owned(s.to_string())
        }
    };
    let counts = match (kind.is_member(), c.members) {
        (false, Some(members)) => Some(MemberCounts {
            members: count(|| "members".into(), members as u64)? as usize,
            unexpected: c.unexpected_members,
        }),
        (false, None) => return Ok(None),
        (true, _) => None,
    };
    Ok(Some(ChangeEvent {
        time_unix,
        kind,
        key,
        image_name: c.image_name.into(),
        member_id: c.member_id,
        member_type: as_label(&c.member_type),
        status: as_label(&c.status),
        old_status: c.old_status.map(|s| as_label(&s)),
        unexpected: c.unexpected,
        counts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Store;

    const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
    const IMAGE: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
    const NOW: f64 = 1_750_000_000.0;
    const LIMITS: Limits = Limits {
        members_per_image: 3,
        members_total: 5,
    };

    fn member(id: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "type": "project", "status": "accepted",
                           "created_at": NOW, "updated_at": NOW})
    }

    fn image(id: &str, members: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({"region": "cn-north-4", "project_id": PROJECT, "image_id": id,
                           "name": "golden", "source": "config", "last_success": NOW,
                           "complete": true, "members": members,
                           "watched": {"p1": true}, "changes": {"added": 2}})
    }

    fn change() -> serde_json::Value {
        serde_json::json!({"time": NOW, "change": "added", "region": "cn-north-4",
                           "project_id": PROJECT, "image_id": IMAGE, "image_name": "golden",
                           "member_id": "p1", "member_type": "project", "status": "pending",
                           "unexpected": true})
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"version": 1, "written_at": NOW,
                           "images": [image(IMAGE, vec![member("p1"), member("p2")])],
                           "changes": [change()]})
    }

    fn load(dir: &Path, file: &serde_json::Value) -> Result<Option<Restored>, StorageError> {
        std::fs::write(dir.join(FILE), file.to_string()).unwrap();
        Storage::new(dir, LIMITS).load()
    }

    #[test]
    fn a_good_file_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let r = load(dir.path(), &good()).unwrap().unwrap();
        assert_eq!(r.images.len(), 1);
        assert_eq!(r.images[0].member_count(), 2);
        assert_eq!(r.images[0].changes[&ChangeKind::Added], 2);
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.written_at, NOW);
    }

    #[test]
    fn values_no_exporter_writes_refuse_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let four: Vec<serde_json::Value> = (0..4).map(|i| member(&format!("p{i}"))).collect();
        let two = |from: usize| {
            (from..from + 2)
                .map(|i| member(&format!("p{i}")))
                .collect::<Vec<_>>()
        };
        let other = "00000000-1bc3-4c3f-893e-3e471fd16e64";
        let third = "00000000-0000-4c3f-893e-3e471fd16e64";
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("written_at", Box::new(|f| f["written_at"] = 1e19.into())),
            ("written_at", Box::new(|f| f["written_at"] = 1e300.into())),
            ("written_at", Box::new(|f| f["written_at"] = (-1.0).into())),
            ("written_at", Box::new(|f| f["written_at"] = 1.0.into())),
            (
                "changes[0].time",
                Box::new(|f| f["changes"][0]["time"] = 1e13.into()),
            ),
            (
                "images[0].last_success",
                Box::new(|f| f["images"][0]["last_success"] = 1e15.into()),
            ),
            (
                "images[0].members[1].created_at",
                Box::new(|f| f["images"][0]["members"][1]["created_at"] = 1e12.into()),
            ),
            (
                "images[0].members[0].updated_at",
                Box::new(|f| f["images"][0]["members"][0]["updated_at"] = 7_258_118_400.0.into()),
            ),
            (
                "images[0].members: 4, more than max_members_per_image (3)",
                Box::new(move |f| f["images"][0]["members"] = four.clone().into()),
            ),
            (
                "images[2].members: 6, more than max_members_total (5)",
                Box::new(move |f| {
                    let images = f["images"].as_array_mut().unwrap();
                    images.push(image(other, two(2)));
                    images.push(image(third, two(4)));
                }),
            ),
            (
                "changes: 1001, more than the changes kept (1000)",
                Box::new(|f| f["changes"] = vec![change(); MAX_CHANGES + 1].into()),
            ),
            (
                "images[0].changes.added",
                Box::new(|f| f["images"][0]["changes"]["added"] = u64::MAX.into()),
            ),
            (
                "images[0].members[0].id: 1025 bytes",
                Box::new(|f| f["images"][0]["members"][0]["id"] = "a".repeat(1025).into()),
            ),
            (
                "images[0].members[0].id: empty",
                Box::new(|f| f["images"][0]["members"][0]["id"] = "".into()),
            ),
            (
                "images[0].members[0].status: 65 bytes",
                Box::new(|f| f["images"][0]["members"][0]["status"] = "s".repeat(65).into()),
            ),
            (
                "changes[0].member_id",
                Box::new(|f| f["changes"][0]["member_id"] = "m".repeat(1 << 20).into()),
            ),
            (
                "images[0].watched",
                Box::new(|f| f["images"][0]["watched"] = serde_json::json!({"not an ID": true})),
            ),
            (
                "images[0].project_id",
                Box::new(|f| f["images"][0]["project_id"] = "x".into()),
            ),
            (
                "images[1]: the same image as an earlier entry",
                Box::new(|f| {
                    f["images"]
                        .as_array_mut()
                        .unwrap()
                        .push(image(IMAGE, vec![]))
                }),
            ),
        ];
        for (at, edit) in cases {
            let mut file = good();
            edit(&mut file);
            let e = load(dir.path(), &file).map(|_| ()).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, StorageError::Invalid { .. }), "{at}: {text}");
            assert!(text.contains(at), "{at}: {text}");
            assert!(text.len() < 500, "{at}: {text}");
        }
    }

    #[test]
    fn a_file_past_its_cap_is_refused_unread() {
        assert_eq!(max_state_bytes(0), 16 << 20);
        assert_eq!(max_state_bytes(1_000_000), (16 << 20) + 512_000_000);
        assert_eq!(max_state_bytes(usize::MAX), u64::MAX);
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join(FILE)).unwrap();
        // Sparse: nothing is written, and nothing is read.
        f.set_len(max_state_bytes(LIMITS.members_total) + 1)
            .unwrap();
        let e = Storage::new(dir.path(), LIMITS)
            .load()
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, StorageError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("max_members_total"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn what_is_not_a_regular_file_is_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path(), LIMITS);
        let fifo = std::process::Command::new("mkfifo")
            .arg(storage.file())
            .status()
            .unwrap();
        assert!(fifo.success());
        // Opening the FIFO would block this test for ever.
        let e = storage.load().map(|_| ()).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file but a FIFO"),
            "{e}"
        );
        let aside = storage.move_aside(NOW).unwrap();
        assert!(!storage.file().exists() && aside.exists());
        std::os::unix::fs::symlink("/dev/zero", storage.file()).unwrap();
        let e = storage.load().map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        std::fs::remove_file(storage.file()).unwrap();
        std::fs::create_dir(storage.file()).unwrap();
        let e = storage.load().map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn a_written_file_is_private_and_reads_back() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let storage = Storage::new(&dir, LIMITS);
        let store = Store::new();
        let restored = load_text(&good());
        store.restore(restored.images);
        let changes: Vec<Arc<ChangeEvent>> = restored.changes.into_iter().map(Arc::new).collect();
        // A temporary file an older version left, readable by all.
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("state.json.tmp"), "old").unwrap();
        storage
            .write(&store.snapshot(), &[], &changes, NOW)
            .unwrap();
        let r = storage.load().unwrap().unwrap();
        assert_eq!(r.images[0].member_count(), 2);
        assert_eq!(r.changes.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&storage.file()), 0o600);
            // Created by the exporter: 0700.
            let fresh = parent.path().join("new/state");
            Storage::new(&fresh, LIMITS)
                .write(&store.snapshot(), &[], &changes, NOW)
                .unwrap();
            assert_eq!(mode(&fresh), 0o700);
            assert_eq!(mode(&fresh.join(FILE)), 0o600);
        }
    }

    fn load_text(file: &serde_json::Value) -> Restored {
        let dir = tempfile::tempdir().unwrap();
        load(dir.path(), file).unwrap().unwrap()
    }

    #[test]
    fn one_process_holds_the_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let storage = Storage::new(&dir, LIMITS);
        let lock = storage.lock().unwrap();
        let held = storage.lock().unwrap_err();
        let text = held.to_string();
        assert!(
            matches!(held, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{text}"
        );
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("(PID {})", std::process::id())),
            "{text}"
        );
        drop(lock);
        let _again = storage.lock().unwrap();
    }
}

#[cfg(test)]
mod image_unmonitored_tests {
    use super::*;
    use crate::state::Store;

    /// Within the years a state file may hold.
    const T: f64 = 1_750_000_000.0;
    const LIMITS: Limits = Limits {
        members_per_image: 10,
        members_total: 10,
    };

    fn key() -> ImageKey {
        ImageKey {
            region: "cn-north-4".into(),
            project_id: "1bed856811654c1cb661a6ca845ebc77".into(),
            image_id: "d164b5df-1bc3-4c3f-893e-3e471fd16e64".into(),
        }
    }

    #[test]
    fn changes_round_trip_image_unmonitored_included() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path(), LIMITS);
        let name: Arc<str> = "golden".into();
        let member = MemberRecord {
            member_id: "edc89b490d7d4392898e19b2deb34797".into(),
            member_type: label(Some("project")),
            status: label(Some("pending")),
            urn: String::new(),
            created_at: None,
            updated_at: None,
            unexpected: true,
        };
        let events = [
            ChangeEvent::new(T + 10.0, ChangeKind::Added, &key(), &name, &member, None),
            ChangeEvent::image_unmonitored(
                T + 20.0,
                &key(),
                &name,
                MemberCounts {
                    members: 2,
                    unexpected: Some(1),
                },
            ),
            ChangeEvent::image_unmonitored(
                T + 30.0,
                &key(),
                &name,
                MemberCounts {
                    members: 3,
                    unexpected: None,
                },
            ),
        ];
        let held: Vec<Arc<ChangeEvent>> = events.iter().cloned().map(Arc::new).collect();
        storage
            .write(&Store::new().snapshot(), &[], &held, T + 40.0)
            .unwrap();
        let restored = storage.load().unwrap().unwrap();
        assert_eq!(restored.changes, events);
        assert_eq!(restored.changes[1].member_type, "");
        assert_eq!(restored.changes[1].status, "");
    }

    #[test]
    fn an_unknown_kind_or_an_image_event_without_counts_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let row = |change: &str, counts: &str| {
            format!(
                r#"{{"time":1750000000,"change":"{change}","region":"cn-north-4","project_id":"1bed856811654c1cb661a6ca845ebc77","image_id":"d164b5df-1bc3-4c3f-893e-3e471fd16e64","image_name":"n","member_id":"","member_type":"","status":"","unexpected":false{counts}}}"#
            )
        };
        let file = format!(
            r#"{{"version":{VERSION},"written_at":1750000000,"images":[],"changes":[{},{},{}]}}"#,
            row("image_renamed", r#","members":1"#),
            row("image_unmonitored", ""),
            row("image_unmonitored", r#","members":1"#),
        );
        std::fs::write(dir.path().join(FILE), file).unwrap();
        let restored = Storage::new(dir.path(), LIMITS).load().unwrap().unwrap();
        assert_eq!(restored.changes.len(), 1);
        assert_eq!(
            restored.changes[0].counts,
            Some(MemberCounts {
                members: 1,
                unexpected: None
            })
        );
    }
}
