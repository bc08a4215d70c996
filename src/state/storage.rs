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
//! A file that cannot be used (unreadable, corrupt, truncated, a future version) never
//! stops the exporter: it is moved aside (`state.json.bad-<unix time>`), a warning
//! names it and why, `ims_exporter_state_restore_successful` is 0, and the exporter
//! starts clean. This module reads and writes values only; the daemon decides when.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::Source;
use crate::state::{
    label, ChangeEvent, ChangeKind, ImageKey, ImageMeta, ImageState, Label, MemberCounts,
    MemberRecord, MemberSet, Snapshot,
};

const FILE: &str = "state.json";
/// Bumped when the format changes incompatibly; a newer file is not guessed at.
pub const VERSION: u32 = 1;
/// A state file larger than this is refused (about 5 million members).
const MAX_STATE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{file}: {message}")]
    Unusable { file: String, message: String },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
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
}

impl Storage {
    pub fn new(dir: &Path) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Reads the state file. `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<Restored>, StorageError> {
        let path = self.file();
        let unusable = |message: String| StorageError::Unusable {
            file: path.display().to_string(),
            message,
        };
        let bytes = match crate::files::read_capped(&path, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unusable(format!("cannot read: {e}"))),
        };
        // The version first, so that a newer format is named as such.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(&bytes)
            .map_err(|e| unusable(format!("not a state file: {e}")))?;
        if v.version != VERSION {
            return Err(unusable(format!(
                "format version {} (this exporter reads {VERSION})",
                v.version
            )));
        }
        let file: StateFile =
            serde_json::from_slice(&bytes).map_err(|e| unusable(format!("corrupt: {e}")))?;
        let images = file.images.into_iter().map(restore_image).collect();
        Ok(Some(Restored {
            images,
            discovered: file.discovered,
            changes: file
                .changes
                .into_iter()
                .filter_map(restore_change)
                .collect(),
            written_at: file.written_at,
        }))
    }

    /// Moves an unusable state file aside, so that it is kept for a post-mortem and
    /// the next write does not overwrite it. Returns where it went.
    pub fn move_aside(&self, now_unix: f64) -> Option<PathBuf> {
        let to = self.dir.join(format!("{FILE}.bad-{}", now_unix as u64));
        std::fs::rename(self.file(), &to).ok().map(|_| to)
    }

    /// Writes `snapshot` (and the discovered sets) crash-safely. Returns the bytes
    /// written. Blocking: call it from a blocking thread.
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
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(bytes.len())
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

fn restore_image(i: StoredImage) -> ImageState {
    let key = ImageKey {
        region: i.region.into(),
        project_id: i.project_id.into(),
        image_id: i.image_id.into(),
    };
    let source = if i.source == Source::Discovery.as_str() {
        Source::Discovery
    } else {
        Source::Config
    };
    let meta = ImageMeta {
        name: i.name.into(),
        source,
    };
    let records = i
        .members
        .into_iter()
        .map(|m| MemberRecord {
            member_id: m.id,
            member_type: label(Some(&m.member_type)),
            status: label(Some(&m.status)),
            urn: m.urn,
            created_at: m.created_at,
            updated_at: m.updated_at,
            unexpected: true,
        })
        .collect();
    let mut set = MemberSet::from_records(records, 0);
    set.complete = i.complete;
    let mut state = ImageState::new(key, meta);
    state.members = Some(Arc::new(set));
    state.last_success_unix = i.last_success;
    state.watched = i.watched;
    state.changes = i
        .changes
        .into_iter()
        .filter_map(|(k, v)| {
            ChangeKind::parse(&k)
                .filter(|k| k.is_member())
                .map(|k| (k, v))
        })
        .collect();
    state
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

/// An event of a kind this exporter does not know is dropped, not guessed at; so is an
/// image event without its member count.
fn restore_change(c: StoredChange) -> Option<ChangeEvent> {
    let kind = ChangeKind::parse(&c.change)?;
    // A member change names a member; an image event has none (empty fields).
    let text = |s: &str| -> Label {
        if kind.is_member() {
            label(Some(s))
        } else {
            Label::Owned(s.to_string())
        }
    };
    let counts = match (kind.is_member(), c.members) {
        (false, Some(members)) => Some(MemberCounts {
            members,
            unexpected: c.unexpected_members,
        }),
        (false, None) => return None,
        (true, _) => None,
    };
    Some(ChangeEvent {
        time_unix: c.time,
        kind,
        key: ImageKey {
            region: c.region.into(),
            project_id: c.project_id.into(),
            image_id: c.image_id.into(),
        },
        image_name: c.image_name.into(),
        member_id: c.member_id,
        member_type: text(&c.member_type),
        status: text(&c.status),
        old_status: c.old_status.map(|s| text(&s)),
        unexpected: c.unexpected,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Store;

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
        let storage = Storage::new(dir.path());
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
            ChangeEvent::new(10.0, ChangeKind::Added, &key(), &name, &member, None),
            ChangeEvent::image_unmonitored(
                20.0,
                &key(),
                &name,
                MemberCounts {
                    members: 2,
                    unexpected: Some(1),
                },
            ),
            ChangeEvent::image_unmonitored(
                30.0,
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
            .write(&Store::new().snapshot(), &[], &held, 40.0)
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
                r#"{{"time":1,"change":"{change}","region":"r","project_id":"p","image_id":"i","image_name":"n","member_id":"","member_type":"","status":"","unexpected":false{counts}}}"#
            )
        };
        let file = format!(
            r#"{{"version":{VERSION},"written_at":1,"images":[],"changes":[{},{},{}]}}"#,
            row("image_renamed", r#","members":1"#),
            row("image_unmonitored", ""),
            row("image_unmonitored", r#","members":1"#),
        );
        std::fs::write(dir.path().join(FILE), file).unwrap();
        let restored = Storage::new(dir.path()).load().unwrap().unwrap();
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
