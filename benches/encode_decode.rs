//! Micro-benchmarks of the hot paths: decoding one full member-list page, building a
//! `MemberSet` from it, and rendering `/metrics` for a typical fleet (200 images × 50
//! members) in both formats. CI only compiles them (`cargo bench --no-run`); run them
//! with `cargo bench --bench encode_decode`. The end-to-end numbers are in
//! BENCHMARKS.md (`ims-bench`); the figures before the optimisations in
//! docs/benchmarks-history.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ims_exporter::allowlist::Entry;
use ims_exporter::fake_ims::member;
use ims_exporter::fake_ims::synthetic::{splitmix, ORG_URN_PREFIX};
use ims_exporter::ids::Source;
use ims_exporter::ims::member_page;
use ims_exporter::ims::model::{Member, MemberList, MemberPage, PageInfo};
use ims_exporter::render::{Format, Metrics, SelfMetrics};
use ims_exporter::state::{ImageKey, ImageMeta, MemberRecord, MemberSet, Store};
use ims_exporter::timestamp::parse_timestamp;

/// Recipient `n` of `image`, with the same mix of types and statuses as `ims-bench`.
fn recipient(image: &str, n: u64) -> Member {
    let h = splitmix(n);
    let (id, kind) = match n % 20 {
        0 => (format!("ou-{:016x}{:016x}", h, splitmix(h)), "organization"),
        1..=3 => (format!("{:016x}{:016x}", h, splitmix(h)), "domain"),
        _ => (format!("{:016x}{:016x}", h, splitmix(h)), "project"),
    };
    let status = match splitmix(n ^ 0x5eed) % 20 {
        0 => "rejected",
        1..=3 => "pending",
        _ => "accepted",
    };
    let day = 1 + n % 28;
    let created = format!("2025-03-{day:02}T04:07:52Z");
    let updated = format!("2025-04-{day:02}T11:30:05Z");
    let urn = (kind == "organization").then(|| format!("{ORG_URN_PREFIX}{id}"));
    member(image, &id, kind, status, &created, &updated, urn.as_deref())
}

fn image_id(i: usize) -> String {
    format!("d164b5df-1bc3-4c3f-893e-{i:012x}")
}

fn members(image: &str, offset: u64, n: usize) -> Vec<Member> {
    (0..n as u64)
        .map(|j| recipient(image, offset + j))
        .collect()
}

/// The allowlist `ims-bench` configures: the organization by URN and 15 ID globs.
fn allowlist() -> Vec<Entry> {
    let mut entries = vec![format!("urn:{ORG_URN_PREFIX}*")];
    entries.extend("0123456789abcde".chars().map(|c| format!("{c}*")));
    entries
        .iter()
        .map(|e| Entry::parse(e).expect("valid allowlist entry"))
        .collect()
}

/// One full page of a member list, as the API sends it.
fn page_json(n: usize) -> Vec<u8> {
    let list = MemberList {
        members: members(&image_id(0), 0, n),
        schema: Some("/v2/schemas/members".into()),
        page_info: Some(PageInfo {
            next_marker: Some("ZjBlMWQyYzNiNGE1OTY4Nzc4Njk1YTRiM2MyZDFlMGY=".into()),
            current_count: Some(n as u64),
        }),
    };
    serde_json::to_vec(&list).expect("serialize a page")
}

fn decode(c: &mut Criterion) {
    let json = page_json(1000);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("member_list_page_1000", |b| {
        b.iter(|| serde_json::from_slice::<MemberList>(black_box(&json)).expect("decodes"))
    });
    // How the client decoded before the optimisations (docs/benchmarks-history.md):
    // owned strings, with the path of a bad field tracked on the success path too.
    g.bench_function("member_list_page_1000_with_path", |b| {
        b.iter(|| {
            let de = &mut serde_json::Deserializer::from_slice(black_box(&json));
            serde_path_to_error::deserialize::<_, MemberList>(de).expect("decodes")
        })
    });
    // How the client and poller decode: the page scanned (strings borrowed from the
    // body), straight into the records the snapshot keeps, then sorted.
    g.bench_function("member_page_1000_to_member_set", |b| {
        b.iter(|| {
            let page = member_page::decode(black_box(&json)).expect("decodes");
            let records = page
                .members
                .iter()
                .map(|m| MemberRecord::from_ref(m).0)
                .collect();
            MemberSet::from_records(records, 0)
        })
    });
    // The page alone: serde's borrowed decoding, and the scanner the client uses.
    g.bench_function("member_page_1000_serde", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&json)).expect("UTF-8");
            serde_json::from_str::<MemberPage<'_>>(text).expect("decodes")
        })
    });
    g.bench_function("member_page_1000_scanned", |b| {
        b.iter(|| member_page::decode(black_box(&json)).expect("decodes"))
    });
    let stamps: Vec<String> = (0..1000u64)
        .map(|i| {
            format!(
                "2023-{:02}-{:02}T04:07:{:02}Z",
                i % 12 + 1,
                i % 28 + 1,
                i % 60
            )
        })
        .collect();
    g.bench_function("timestamps_1000", |b| {
        b.iter(|| {
            black_box(&stamps)
                .iter()
                .filter_map(|s| parse_timestamp(s))
                .sum::<f64>()
        })
    });
    g.finish();

    let list: MemberList = serde_json::from_slice(&json).expect("decodes");
    let entries = allowlist();
    let mut g = c.benchmark_group("member_set");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("from_api_1000", |b| {
        b.iter_batched(
            || list.members.clone(),
            |m| MemberSet::from_api(black_box(m)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("evaluate_1000_16_entries", |b| {
        b.iter_batched(
            || MemberSet::from_api(list.members.clone()),
            |set| set.evaluate(black_box(&entries)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A store as the poller leaves it: `images` images with `per_image` members each.
fn fleet(images: usize, per_image: usize) -> Metrics {
    let store = Arc::new(Store::new());
    let keys: Vec<(ImageKey, ImageMeta)> = (0..images)
        .map(|i| {
            let key = ImageKey {
                region: "cn-north-4".into(),
                project_id: "1bed856811654c1cb661a6ca845ebc77".into(),
                image_id: image_id(i).into(),
            };
            let meta = ImageMeta {
                name: format!("bench-image-{i:05}").into(),
                source: Source::Config,
            };
            (key, meta)
        })
        .collect();
    let slots = store.set_images(&keys);
    let entries = allowlist();
    let now = ims_exporter::timestamp::now_unix();
    for (i, slot) in slots.iter().enumerate() {
        let api = members(&image_id(i), (i * 37) as u64, per_image);
        let set = MemberSet::from_api(api).evaluate(&entries);
        slot.store(slot.load().succeeded(set, BTreeMap::new(), now));
    }
    Metrics::new(store, std::sync::Arc::new(SelfMetrics::new()))
}

fn render(c: &mut Criterion) {
    let metrics = fleet(200, 50);
    let mut g = c.benchmark_group("render_200x50");
    g.sample_size(30);
    g.throughput(Throughput::Elements(200 * 50));
    g.bench_function("text", |b| {
        b.iter(|| metrics.render(black_box(Format::Text)))
    });
    g.bench_function("openmetrics", |b| {
        b.iter(|| metrics.render(black_box(Format::OpenMetrics)))
    });
    g.finish();
}

criterion_group!(benches, decode, render);
criterion_main!(benches);
