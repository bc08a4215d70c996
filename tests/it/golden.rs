//! Golden files: what `/metrics` looks like for one fixed snapshot, in both formats,
//! so a reader sees exactly what the exporter emits and a change to it shows up in
//! review as a diff of `tests/data/golden/`.
//!
//! The snapshot is built through the library (no binary, no fake IMS), with fixed
//! timestamps, and rendered with `Metrics::render_at` at a fixed `now`. After an
//! intended change to the output, regenerate both files and review the diff:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --test it golden
//! git diff tests/data/golden/
//! ```
//!
//! One thing is not reproducible and is normalised before comparing (see
//! [`normalise`]): the `revision` label of `ims_exporter_build_info` (set from
//! `IMS_EXPORTER_REVISION` at build time; written as `unknown`, what a plain
//! `cargo build` emits).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ims_exporter::allowlist::Entry;
use ims_exporter::fake_ims::member;
use ims_exporter::ids::Source;
use ims_exporter::ims::error::Reason;
use ims_exporter::ims::observer::RequestObserver;
use ims_exporter::render::{Format, Metrics, RenderOptions, SelfMetrics};
use ims_exporter::state::{
    ChangeKind, DiscoveryStatus, ImageKey, ImageMeta, ImageState, MemberSet, Store,
};

/// 2026-01-01T00:00:00Z: the scrape time ages are computed from.
const FIXED_NOW: f64 = 1_767_225_600.0;

const REGION: &str = "cn-north-4";
const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
const OTHER_REGION: &str = "ap-southeast-1";
const OTHER_PROJECT: &str = "2c3d4e5f60718293a4b5c6d7e8f90a1b";

/// Every member type and status, an unexpected member, organization members with a
/// URN, and a watched member that is missing.
const IMG_MEMBERS: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
/// Polled well once; the last poll failed (kept members, an error reason).
const IMG_FAILING: &str = "370befec-a369-475e-a224-44a45927a8fe";
/// A discovered image of a second target, shared with one allowed project.
const IMG_DISCOVERED: &str = "5b1f8e0a-6c1e-4a53-9d7e-2f0b8c1d9e21";

const ORG_URN_PREFIX: &str =
    "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/";
/// A project nobody allowed (shared by mistake).
const STRAY: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
/// Watched on IMG_MEMBERS but not shared with it.
const WATCHED_MISSING: &str = "3c4d5e6f708192a3b4c5d6e7f8091a2b";

fn key(region: &str, project: &str, image: &str) -> ImageKey {
    ImageKey {
        region: region.into(),
        project_id: project.into(),
        image_id: image.into(),
    }
}

fn entries(list: &[&str]) -> Vec<Entry> {
    list.iter()
        .map(|e| Entry::parse(e).expect("allowlist entry"))
        .collect()
}

/// The snapshot, fixed: three images of two targets, and the self-metrics of a few
/// requests.
fn snapshot() -> Metrics {
    let store = Arc::new(Store::new());
    let self_metrics = SelfMetrics::new();

    let targets = store.set_targets(&[
        (REGION.into(), PROJECT.into()),
        (OTHER_REGION.into(), OTHER_PROJECT.into()),
    ]);
    store.cycle_finished(&targets[0], 1.25);
    targets[1].update(|t| {
        t.discovery = Some(DiscoveryStatus {
            ok: true,
            images: 1,
            last_success_unix: Some(FIXED_NOW - 600.0),
        })
    });
    store.cycle_finished(&targets[1], 0.5);

    let slots = store.set_images(&[
        (
            key(REGION, PROJECT, IMG_MEMBERS),
            ImageMeta {
                name: "golden-ubuntu-22.04".into(),
                source: Source::Config,
            },
        ),
        (
            key(REGION, PROJECT, IMG_FAILING),
            ImageMeta {
                name: "golden-debian-12".into(),
                source: Source::Config,
            },
        ),
        (
            key(OTHER_REGION, OTHER_PROJECT, IMG_DISCOVERED),
            ImageMeta {
                name: "golden-windows-2022".into(),
                source: Source::Discovery,
            },
        ),
    ]);

    // IMG_MEMBERS: each member type with each status. Allowed: the projects and
    // domains by ID, the organization's units by URN; STRAY is unexpected.
    let allowed = entries(&[
        "edc89b490d7d4392898e19b2deb34797",
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "5a6b7c8d*",
        &format!("urn:{ORG_URN_PREFIX}*"),
    ]);
    let day = |d: u32| format!("2025-06-{d:02}T08:00:00Z");
    let members = [
        ("edc89b490d7d4392898e19b2deb34797", "project", "accepted"),
        ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "project", "pending"),
        (STRAY, "project", "rejected"),
        ("5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d", "domain", "accepted"),
        ("5a6b7c8d00112233445566778899aabb", "domain", "pending"),
        ("5a6b7c8dffeeddccbbaa998877665544", "domain", "rejected"),
        (
            "ou-qdjrky7i07higfa4f6reqv9etybmp4ng",
            "organization",
            "accepted",
        ),
        (
            "ou-r2d2c3po4bb8ewok5han6solo7leia",
            "organization",
            "pending",
        ),
        (
            "ou-x1y2z3a4b5c6d7e8f9g0h1i2j3k4l5m6",
            "organization",
            "rejected",
        ),
    ]
    .iter()
    .enumerate()
    .map(|(i, (id, kind, status))| {
        let urn = (*kind == "organization").then(|| format!("{ORG_URN_PREFIX}{id}"));
        let created = day(1 + i as u32);
        let updated = day(11 + i as u32);
        member(
            IMG_MEMBERS,
            id,
            kind,
            status,
            &created,
            &updated,
            urn.as_deref(),
        )
    })
    .collect();
    let set = MemberSet::from_api(members).evaluate(&allowed);
    let watched = BTreeMap::from([
        ("edc89b490d7d4392898e19b2deb34797".to_string(), true),
        (WATCHED_MISSING.to_string(), false),
    ]);
    let state = slots[0].load().succeeded(set, watched, FIXED_NOW - 42.0);
    slots[0].store(ImageState {
        changes: BTreeMap::from([(ChangeKind::Added, 2), (ChangeKind::StatusChanged, 1)]),
        ..state
    });

    // IMG_FAILING: one good poll, then a throttled one, then a server error last.
    let allowed = entries(&["edc89b490d7d4392898e19b2deb34797"]);
    let set = MemberSet::from_api(vec![member(
        IMG_FAILING,
        "edc89b490d7d4392898e19b2deb34797",
        "project",
        "accepted",
        "2025-03-01T12:00:00Z",
        "2025-03-02T12:00:00Z",
        None,
    )])
    .evaluate(&allowed);
    let state = slots[1]
        .load()
        .succeeded(set, BTreeMap::new(), FIXED_NOW - 3600.0)
        .failed(Reason::Throttled, &allowed)
        .failed(Reason::Http5xx, &allowed);
    slots[1].store(state);

    // IMG_DISCOVERED: clean, one member removed since the baseline.
    let allowed = entries(&["0f1e2d3c4b5a69788796a5b4c3d2e1f0"]);
    let set = MemberSet::from_api(vec![member(
        IMG_DISCOVERED,
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "project",
        "accepted",
        "2024-12-24T18:30:00+08:00",
        "2024-12-25T09:15:30.250Z",
        None,
    )])
    .evaluate(&allowed);
    let state = slots[2]
        .load()
        .succeeded(set, BTreeMap::new(), FIXED_NOW - 5.0);
    slots[2].store(ImageState {
        changes: BTreeMap::from([(ChangeKind::Removed, 1)]),
        ..state
    });

    // The requests that made this snapshot, as the client reports them.
    self_metrics.config_loaded(true, FIXED_NOW - 86_400.0);
    let ms = std::time::Duration::from_millis;
    for (operation, code, elapsed) in [
        ("list_members", "200", ms(40)),
        ("list_members", "200", ms(120)),
        ("list_members", "200", ms(80)),
        ("list_members", "429", ms(15)),
        ("list_members", "503", ms(2_000)),
        ("get_member", "200", ms(30)),
        ("get_member", "404", ms(20)),
        ("list_images", "200", ms(300)),
    ] {
        self_metrics.request(operation, code, elapsed);
    }
    self_metrics.retry("list_members");
    self_metrics.retry("list_members");
    self_metrics.retry("list_images");

    let metrics = Metrics::new(store, Arc::new(self_metrics));
    metrics.set_options(RenderOptions {
        credential_expiry: Arc::new(|| vec![("ecs_metadata", FIXED_NOW + 3600.0)]),
        ..RenderOptions::default()
    });
    metrics
}

/// Makes the rendering reproducible; see the header comment.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("ims_exporter_build_info{") {
            let start = line.find("revision=\"").expect("a revision label") + 10;
            let end = start + line[start..].find('"').expect("end of the revision");
            out.push_str(&format!("{}unknown{}\n", &line[..start], &line[end..]));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

/// Compares `got` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check(name: &str, got: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the golden directory");
        std::fs::write(&path, got).expect("write the golden file");
        eprintln!("wrote {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e}\n(create it with UPDATE_GOLDEN=1 cargo test --test it golden)",
            path.display()
        )
    });
    if got != want {
        let (n, (w, g)) = want
            .lines()
            .chain(std::iter::repeat("<end of file>"))
            .zip(got.lines().chain(std::iter::repeat("<end of output>")))
            .enumerate()
            .find(|(_, (w, g))| w != g)
            .expect("a differing line");
        panic!(
            "{} differs from the output, first at line {}:\n  file:   {w}\n  output: {g}\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test --test it golden, and review \
             the diff.",
            path.display(),
            n + 1
        );
    }
}

#[test]
fn text_format_matches_the_golden_file() {
    let metrics = snapshot();
    check(
        "metrics.txt",
        &normalise(&metrics.render_at(Format::Text, FIXED_NOW)),
    );
}

#[test]
fn openmetrics_format_matches_the_golden_file() {
    let metrics = snapshot();
    check(
        "metrics.openmetrics.txt",
        &normalise(&metrics.render_at(Format::OpenMetrics, FIXED_NOW)),
    );
}

/// The snapshot renders the same twice over (what the normalisation leaves is
/// deterministic), and normalising changes nothing in the families it leaves alone.
#[test]
fn rendering_is_reproducible() {
    let a = normalise(&snapshot().render_at(Format::Text, FIXED_NOW));
    let b = normalise(&snapshot().render_at(Format::Text, FIXED_NOW));
    assert_eq!(a, b);
    let raw = snapshot().render_at(Format::OpenMetrics, FIXED_NOW);
    let keep = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("ims_exporter_build_info{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(keep(&normalise(&raw)), keep(&raw));
}
