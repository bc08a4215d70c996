//! The state file: restore, refusals, modes, the lock, change kinds.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::state::{
    ChangeEvent, ChangeKind, ImageKey, MemberCounts, MemberRecord, Store, MAX_CHANGES,
};

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

/// Within the years a state file may hold.
const T: f64 = 1_750_000_000.0;

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
    let member = MemberRecord::new(
        "edc89b490d7d4392898e19b2deb34797",
        Some("project"),
        Some("pending"),
        None,
        None,
        None,
    );
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
