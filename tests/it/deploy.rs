//! The packaging: `Dockerfile` (and `.dockerignore`), `deploy/systemd/` and the kustomize
//! base in `deploy/kubernetes/`. Each is checked with the real tools that judge it —
//! hadolint, `systemd-analyze verify` and `security`, `kubectl kustomize`,
//! PyPI's `kubernetes-validate` (the Kubernetes OpenAPI schemas) and the Prometheus
//! Operator's schemas from npm's `@kubernetes-models/prometheus-operator` — against each
//! other (ports, paths, user, labels, names), against the exporter's own config loader
//! (`--config.check` of the shipped configs), and the PrometheusRule against
//! `alerts/ims-exporter.rules.yml`, so the two never drift.
//!
//! `bash .ci/test` installs the tools when they are missing; without them the tests that
//! need one print SKIPPED, except under `CI=true`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support;
use crate::support::{describe, run_tool, AK, SK};
use regex::Regex;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const DOCKERFILE: &str = "Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const UNIT: &str = "deploy/systemd/ims-exporter.service";
const SOCKET_UNIT: &str = "deploy/systemd/ims-exporter.socket";
const SOCKET_DROP_IN: &str = "deploy/systemd/ims-exporter.service.d/socket-activation.conf";
const SYSTEMD_CONFIG: &str = "deploy/systemd/config.yaml";
const KUSTOMIZE_BASE: &str = "deploy/kubernetes";
const RULES: &str = "alerts/ims-exporter.rules.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const GENERATE_RULE: &str = "deploy/kubernetes/generate-prometheusrule.sh";
/// Where `.ci/test` installs the npm package with the Prometheus Operator's schemas.
const SCHEMA_TOOLS: &str = "target/deploy-tools";
const SCHEMA_PACKAGE: &str = "@kubernetes-models/prometheus-operator";

/// The exporter's port, everywhere.
const PORT: u64 = 10027;
const PORT_NAME: &str = "http-metrics";
/// The config file inside the image and the pod.
const CONFIG_DIR: &str = "/etc/ims-exporter";
const CONFIG_FILE: &str = "/etc/ims-exporter/config.yaml";
/// The image's non-root user, which the Deployment runs as.
const IMAGE_UID: u64 = 65532;
/// The environment variables the exporter reads its access key pair from.
const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
/// Highest `systemd-analyze security` exposure accepted, on its 0..100 scale ("1.5").
const MAX_EXPOSURE: &str = "15";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml_docs(text: &str, what: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}")))
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml_file(path: &str) -> Yaml {
    match yaml_docs(&read(path), path).as_slice() {
        [doc] => doc.clone(),
        docs => panic!("{path}: expected one YAML document, found {}", docs.len()),
    }
}

fn to_json(doc: &Yaml) -> Json {
    serde_json::to_value(doc).expect("YAML to JSON")
}

/// `doc` at a `.`-separated path of keys and list indices, as JSON (Null if absent).
fn at(doc: &Json, path: &str) -> Json {
    doc.pointer(&format!("/{}", path.replace('.', "/")))
        .cloned()
        .unwrap_or(Json::Null)
}

fn str_at(doc: &Json, path: &str) -> String {
    match at(doc, path) {
        Json::String(s) => s,
        other => panic!("{path}: expected a string, got {other}"),
    }
}

// ------------------------------------------------------------------------------------
// Dockerfile

/// One instruction of a Dockerfile, continuation lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    cmd: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read(DOCKERFILE).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (cmd, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                out.push(Instruction {
                    cmd: cmd.to_uppercase(),
                    args: args.trim().to_string(),
                });
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "{DOCKERFILE} ends in a continuation line"
    );
    out
}

/// The stages of the Dockerfile: (FROM arguments with global ARGs substituted, instructions).
fn stages() -> Vec<(String, Vec<Instruction>)> {
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<(String, Vec<Instruction>)> = Vec::new();
    for ins in dockerfile() {
        match (ins.cmd.as_str(), stages.last_mut()) {
            ("FROM", _) => {
                let mut from = ins.args.clone();
                for (k, v) in &global_args {
                    from = from
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                stages.push((from, Vec::new()));
            }
            ("ARG", None) => {
                let (k, v) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
                global_args.insert(k.to_string(), v.trim_matches('"').to_string());
            }
            (_, Some((_, body))) => body.push(ins),
            (cmd, None) => panic!("{DOCKERFILE}: {cmd} before the first FROM"),
        }
    }
    stages
}

/// Sources and flags of a COPY instruction.
fn copy_parts(args: &str) -> (Vec<String>, Vec<String>, String) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (flags, rest): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = rest.split_last().expect("COPY has a destination");
    (
        flags.iter().map(|s| s.to_string()).collect(),
        sources.iter().map(|s| s.to_string()).collect(),
        dest.to_string(),
    )
}

fn exec_form(ins: &Instruction) -> Vec<String> {
    serde_json::from_str(&ins.args).unwrap_or_else(|_| {
        panic!(
            "{} must use the exec (JSON array) form: {}",
            ins.cmd, ins.args
        )
    })
}

fn rust_version_of_manifest() -> (u64, u64) {
    let manifest = read("Cargo.toml");
    let re = Regex::new(r#"(?m)^rust-version\s*=\s*"(\d+)\.(\d+)"#).unwrap();
    let c = re
        .captures(&manifest)
        .expect("Cargo.toml sets rust-version");
    (c[1].parse().unwrap(), c[2].parse().unwrap())
}

/// Two stages: a release build on a pinned Rust image new enough for the crate, then a
/// minimal runtime image running the binary as the non-root user the Deployment expects,
/// on the exporter's port, with the config where the Deployment mounts it.
#[test]
fn dockerfile_builds_a_release_binary_into_a_minimal_nonroot_image() {
    let stages = stages();
    assert!(
        stages.len() >= 2,
        "{DOCKERFILE} must be multi-stage: {stages:?}"
    );

    // The build stage: the official Rust image, pinned to a minor version at least the
    // crate's rust-version, on Debian 12 like the runtime image (same glibc).
    let (build_from, build) = &stages[0];
    let re = Regex::new(r"^rust:(\d+)\.(\d+)(?:\.\d+)?-bookworm\s+AS\s+(\S+)$").unwrap();
    let c = re.captures(build_from).unwrap_or_else(|| {
        panic!("build stage must be FROM rust:X.Y-bookworm AS name: {build_from}")
    });
    let image_version: (u64, u64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
    let msrv = rust_version_of_manifest();
    assert!(
        image_version >= msrv,
        "the build image's Rust {image_version:?} is older than Cargo.toml's rust-version {msrv:?}"
    );
    let build_name = c[3].to_string();
    let run = build
        .iter()
        .filter(|i| i.cmd == "RUN")
        .map(|i| i.args.as_str())
        .find(|a| a.contains("cargo build"))
        .expect("the build stage runs cargo build");
    for flag in ["--release", "--locked", "--bin ims-exporter"] {
        assert!(run.contains(flag), "cargo build without {flag}: {run}");
    }

    // The runtime stage.
    let (runtime_from, runtime) = stages.last().unwrap();
    assert!(
        !runtime_from.starts_with("rust:"),
        "the runtime image must not be the Rust toolchain image: {runtime_from}"
    );
    assert!(
        runtime_from.starts_with("gcr.io/distroless/cc-debian12")
            || runtime_from.starts_with("debian:bookworm-slim"),
        "the runtime image is meant to be distroless cc or debian-slim (CA certificates, \
         glibc 2.36 like the build image): {runtime_from}"
    );
    if runtime_from.starts_with("debian:") {
        let runs: Vec<_> = runtime.iter().filter(|i| i.cmd == "RUN").collect();
        assert!(
            runs.iter().any(|i| i.args.contains("ca-certificates")),
            "a debian runtime image must install ca-certificates"
        );
    }
    let find =
        |cmd: &str| -> Vec<&Instruction> { runtime.iter().filter(|i| i.cmd == cmd).collect() };

    let user = find("USER");
    let user = user.last().expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap();
    assert_eq!(
        uid.parse::<u64>().ok(),
        Some(IMAGE_UID),
        "USER must be the numeric non-root uid {IMAGE_UID} (Kubernetes' runAsNonRoot can only \
         check a numeric one): {}",
        user.args
    );

    let exposed: Vec<String> = find("EXPOSE")
        .iter()
        .flat_map(|i| i.args.split_whitespace().map(str::to_string))
        .collect();
    assert!(
        exposed
            .iter()
            .any(|p| p == &PORT.to_string() || p == &format!("{PORT}/tcp")),
        "EXPOSE {PORT} missing: {exposed:?}"
    );

    // The binary comes from the build stage; the config sits where the Deployment mounts
    // its ConfigMap.
    let copies: Vec<_> = find("COPY")
        .into_iter()
        .map(|i| copy_parts(&i.args))
        .collect();
    let binary = copies
        .iter()
        .find(|(flags, _, _)| flags.contains(&format!("--from={build_name}")))
        .expect("the runtime stage copies the binary from the build stage");
    let entrypoint = exec_form(find("ENTRYPOINT").last().expect("ENTRYPOINT"));
    assert_eq!(
        entrypoint.first(),
        Some(&binary.2),
        "ENTRYPOINT must run the binary copied from the build stage ({})",
        binary.2
    );
    assert!(
        copies
            .iter()
            .any(|(flags, _, dest)| flags.is_empty() && dest == CONFIG_FILE),
        "the image must ship a default {CONFIG_FILE}"
    );
    let cmd = exec_form(find("CMD").last().expect("CMD"));
    let args: Vec<String> = entrypoint[1..].iter().chain(&cmd).cloned().collect();
    assert!(
        args.contains(&format!("--config.file={CONFIG_FILE}")),
        "the image must start with --config.file={CONFIG_FILE}: {args:?}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--web.listen-address") && !a.ends_with(&format!(":{PORT}"))),
        "the image must listen on {PORT}: {args:?}"
    );
}

/// One `.dockerignore` rule: a pattern over context-relative paths, or an exception (`!`).
struct IgnoreRule {
    exception: bool,
    pattern: Regex,
}

/// `.dockerignore` as Docker reads it: each line a pattern (`*`, `?`, `**`) over paths
/// relative to the context root; a path is excluded when the last rule matching it, or
/// one of its parent directories, is not an exception.
fn dockerignore() -> Vec<IgnoreRule> {
    read(DOCKERIGNORE)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (exception, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let p = p
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            let mut re = String::from("^");
            let mut chars = p.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '*' if chars.peek() == Some(&'*') => {
                        chars.next();
                        re.push_str(".*");
                    }
                    '*' => re.push_str("[^/]*"),
                    '?' => re.push_str("[^/]"),
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
            }
            re.push('$');
            IgnoreRule {
                exception,
                pattern: Regex::new(&re).expect("pattern"),
            }
        })
        .collect()
}

fn ignored(rules: &[IgnoreRule], path: &str) -> bool {
    let mut candidates = vec![path.to_string()];
    let mut p = Path::new(path);
    while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
        candidates.push(parent.to_string_lossy().into_owned());
        p = parent;
    }
    let mut excluded = false;
    for rule in rules {
        if candidates.iter().any(|c| rule.pattern.is_match(c)) {
            excluded = !rule.exception;
        }
    }
    excluded
}

/// Every file under `dir` (relative to the repository root), or `dir` itself if a file.
fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    {
        out.extend(files_under(&entry.expect("dir entry").path()));
    }
    out
}

/// `path` made lexically normal (no `.` or `..`), relative to the repository root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                assert!(out.pop(), "{} leaves the repository", path.display());
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Where the build stage's COPY instructions put the repository's files, relative to
/// its WORKDIR: (file in the repository, path in the build stage), `.dockerignore` applied.
fn build_stage_files(rules: &[IgnoreRule]) -> Vec<(PathBuf, PathBuf)> {
    let stages = stages();
    let (_, build) = &stages[0];
    let mut workdir = PathBuf::from("/");
    let mut out = Vec::new();
    for ins in build {
        match ins.cmd.as_str() {
            "WORKDIR" => workdir = workdir.join(&ins.args),
            "ADD" => panic!("{DOCKERFILE}: use COPY, not ADD: {}", ins.args),
            "COPY" => {
                let (flags, sources, dest) = copy_parts(&ins.args);
                assert!(
                    flags.iter().all(|f| !f.starts_with("--from=")),
                    "the build stage copies from the context only: {}",
                    ins.args
                );
                let dest = workdir.join(&dest);
                let dest = normalize(dest.strip_prefix(&workdir).unwrap_or_else(|_| {
                    panic!("COPY outside WORKDIR {}: {}", workdir.display(), ins.args)
                }));
                let into_dir = sources.len() > 1 || ins.args.ends_with('/');
                for source in sources {
                    let source = normalize(Path::new(&source));
                    for file in files_under(&source) {
                        if ignored(rules, &file.to_string_lossy()) {
                            continue;
                        }
                        let target = if source.is_dir() {
                            dest.join(file.strip_prefix(&source).unwrap())
                        } else if into_dir {
                            dest.join(file.file_name().unwrap())
                        } else {
                            dest.clone()
                        };
                        out.push((file, target));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Without a Docker engine, the build is checked from what it consumes: every COPY
/// source exists and passes `.dockerignore`, and a copy of exactly what the build stage
/// copies is a crate cargo accepts (`cargo fetch --locked`: the manifest parses, every
/// target it declares is there, the lock file fits), whose sources find every file they
/// pull in at compile time (`include_str!`, `include_bytes!`, `#[path]`).
#[tokio::test(flavor = "multi_thread")]
async fn docker_build_context_holds_everything_the_build_needs() {
    let rules = dockerignore();
    for (_, body) in &stages() {
        for ins in body.iter().filter(|i| i.cmd == "COPY" || i.cmd == "ADD") {
            let (flags, sources, _) = copy_parts(&ins.args);
            if flags.iter().any(|f| f.starts_with("--from=")) {
                continue;
            }
            for source in sources {
                let path = normalize(Path::new(&source));
                assert!(
                    path.exists(),
                    "{} {source}: no such file in the repository",
                    ins.cmd
                );
                for file in files_under(&path) {
                    let rel = file.to_string_lossy().into_owned();
                    assert!(
                        !ignored(&rules, &rel),
                        "{rel} is copied by `{} {}` but {DOCKERIGNORE} excludes it",
                        ins.cmd,
                        ins.args
                    );
                }
            }
        }
    }
    // The context stays small: target/ (gigabytes) and .git are never sent.
    for heavy in ["target", ".git", "target/release/ims-exporter"] {
        assert!(
            ignored(&rules, heavy),
            "{DOCKERIGNORE} must exclude {heavy}"
        );
    }

    // The build stage's tree, rebuilt in a temporary directory.
    let stage = tempfile::tempdir().expect("tempdir");
    let files = build_stage_files(&rules);
    for (from, to) in &files {
        let to = stage.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).expect("mkdir");
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"] {
        assert!(
            stage.path().join(needed).is_file(),
            "the build stage must COPY {needed}"
        );
    }
    let host = {
        let out = run_tool(
            {
                let mut cmd = Command::new("rustc");
                cmd.arg("-vV");
                cmd
            },
            None,
            TOOL_TIMEOUT,
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let host = text.lines().find_map(|l| l.strip_prefix("host: "));
        host.expect("rustc -vV names the host").to_string()
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(stage.path())
        .args(["fetch", "--locked", "--offline", "--target", &host])
        .env_remove("CARGO_TARGET_DIR");
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "cargo refuses the crate as the Docker build stage sees it ({:?}): copy what it \
         needs in the Dockerfile and let it through {DOCKERIGNORE}:\n{}",
        files
            .iter()
            .filter_map(|(_, to)| to.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<BTreeSet<_>>(),
        describe(&out)
    );

    // Files the sources pull in at compile time.
    let include = Regex::new(
        r#"include_(?:str|bytes)!\s*\(\s*"([^"]+)"|#\[path\s*=\s*"([^"]+)"\]|env!\s*\(\s*"CARGO_MANIFEST_DIR"\s*\)\s*,\s*"/?([^"]+)""#,
    )
    .unwrap();
    for (_, file) in files
        .iter()
        .filter(|(_, to)| to.extension().is_some_and(|e| e == "rs"))
    {
        let text = read(stage.path().join(file));
        for c in include.captures_iter(&text) {
            let target = match (c.get(1).or(c.get(2)), c.get(3)) {
                (Some(relative), _) => file.parent().unwrap().join(relative.as_str()),
                (None, Some(from_root)) => PathBuf::from(from_root.as_str()),
                (None, None) => unreachable!(),
            };
            let target = normalize(&target);
            assert!(
                stage.path().join(&target).exists(),
                "{} pulls in {} at compile time, which the Docker build stage does not copy",
                file.display(),
                target.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerfile_passes_hadolint() {
    if !support::require_tool("hadolint") {
        return;
    }
    let mut cmd = Command::new("hadolint");
    cmd.args(["--no-color", DOCKERFILE]);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "hadolint {DOCKERFILE}:\n{}",
        describe(&out)
    );
}

// ------------------------------------------------------------------------------------
// systemd

/// The unit's `[Service]` settings: key to every value it is given, in order.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT}: not a setting: {line}"));
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

/// A copy of the unit in its own directory, for the tools: ExecStart's binary rewritten
/// to the one cargo built (verify insists that it exists), and `edit` applied.
fn unit_copy(dir: &Path, edit: impl Fn(&str) -> Option<String>) -> PathBuf {
    let text: String = read(UNIT)
        .lines()
        .filter_map(|l| match l.strip_prefix("ExecStart=") {
            Some(rest) => {
                let args = rest.split_once(' ').map(|(_, a)| a).unwrap_or("");
                Some(format!("ExecStart={} {args}", support::bin()))
            }
            None => edit(l),
        })
        .map(|l| l + "\n")
        .collect();
    let path = dir.join("ims-exporter.service");
    std::fs::write(&path, text).expect("write unit copy");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_unit_is_hardened_and_verifies() {
    let text = read(UNIT);
    let settings = unit_settings(&text);
    let one = |k: &str| -> String {
        match settings.get(k).map(Vec::as_slice) {
            Some([v]) => v.clone(),
            other => panic!("{UNIT}: expected one {k}=, got {other:?}"),
        }
    };
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(one(k), v, "{UNIT}: {k}=");
    }
    assert!(
        settings["SystemCallFilter"]
            .iter()
            .any(|v| v == "@system-service"),
        "{UNIT}: SystemCallFilter=@system-service"
    );
    let exec = one("ExecStart");
    assert!(
        exec.contains(&format!("--config.file={CONFIG_FILE}")),
        "{UNIT}: ExecStart must read {CONFIG_FILE}: {exec}"
    );
    let credentials: BTreeSet<String> = settings["LoadCredential"]
        .iter()
        .map(|v| {
            v.split_once(':')
                .expect("LoadCredential=ID:PATH")
                .0
                .to_string()
        })
        .collect();
    assert_eq!(
        credentials,
        BTreeSet::from(["ak".to_string(), "sk".to_string()])
    );
    assert!(
        settings
            .get("Environment")
            .into_iter()
            .flatten()
            .all(|v| !v.contains("HUAWEICLOUD_SDK")),
        "{UNIT}: the key pair must not be in the environment (LoadCredential= instead)"
    );

    if !support::require_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path(), |l| Some(l.to_string()));
    // verify exits 0 even for unknown keys and unparsable values: it only warns. Any
    // output at all is a failure.
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]).arg(&unit);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        describe(&out)
    );

    // The sandbox as systemd scores it, offline (no running systemd needed).
    let security = |unit: PathBuf| {
        let mut cmd = Command::new("systemd-analyze");
        cmd.args([
            "security",
            "--offline=yes",
            &format!("--threshold={MAX_EXPOSURE}"),
            "--no-pager",
        ])
        .arg(unit);
        cmd
    };
    let out = run_tool(security(unit), None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above {MAX_EXPOSURE}/100:\n{}",
        describe(&out)
    );
    // And the threshold bites: the same unit without its user and privilege settings fails.
    let weak_dir = tempfile::tempdir().expect("tempdir");
    let weak = unit_copy(weak_dir.path(), |l| {
        (![
            "DynamicUser=",
            "NoNewPrivileges=",
            "CapabilityBoundingSet=",
            "PrivateUsers=",
        ]
        .iter()
        .any(|k| l.starts_with(k)))
        .then(|| l.to_string())
    });
    let out = run_tool(security(weak), None, TOOL_TIMEOUT).await;
    assert!(
        !out.status.success(),
        "a unit without DynamicUser/NoNewPrivileges must fail the exposure threshold:\n{}",
        describe(&out)
    );
}

/// The `ExecStart=` command lines of a unit or drop-in, in order ("" resets the list).
fn exec_starts(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(str::to_string)
        .collect()
}

/// The socket unit and its drop-in: the drop-in runs the service's own command with
/// `--web.systemd-socket` in place of `--web.listen-address`, on the socket's port, and
/// `systemd-analyze verify` accepts the socket and the service with the drop-in applied.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_socket_unit_activates_the_service() {
    let service = exec_starts(&read(UNIT));
    let drop_in = exec_starts(&read(SOCKET_DROP_IN));
    assert_eq!(
        drop_in.len(),
        2,
        "{SOCKET_DROP_IN}: ExecStart= then one command"
    );
    assert_eq!(
        drop_in[0], "",
        "{SOCKET_DROP_IN}: ExecStart= must reset the service's first"
    );
    assert_eq!(
        drop_in[1],
        service[0].replace(
            &format!("--web.listen-address=:{PORT}"),
            "--web.systemd-socket"
        ),
        "{SOCKET_DROP_IN}: the service's ExecStart with --web.systemd-socket"
    );
    let socket = read(SOCKET_UNIT);
    assert!(
        socket
            .lines()
            .any(|l| l.trim() == format!("ListenStream={PORT}")),
        "{SOCKET_UNIT}: ListenStream={PORT}"
    );

    if !support::require_tool("systemd-analyze") {
        return;
    }
    // The three files in a directory of their own, the binary the one cargo built.
    let install = |dir: &Path, drop_in_binary: &str| {
        let bin = support::bin();
        let service = read(UNIT).replace("/usr/local/bin/ims-exporter", bin);
        std::fs::write(dir.join("ims-exporter.service"), service).unwrap();
        std::fs::write(dir.join("ims-exporter.socket"), read(SOCKET_UNIT)).unwrap();
        std::fs::create_dir_all(dir.join("ims-exporter.service.d")).unwrap();
        let conf = read(SOCKET_DROP_IN).replace("/usr/local/bin/ims-exporter", drop_in_binary);
        std::fs::write(
            dir.join("ims-exporter.service.d/socket-activation.conf"),
            conf,
        )
        .unwrap();
    };
    let verify = |dir: &Path| {
        let mut cmd = Command::new("systemd-analyze");
        // Drop-ins are found on the unit path only: the directory, then the defaults.
        cmd.env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
            .current_dir(dir)
            .args([
                "verify",
                "--man=no",
                "ims-exporter.socket",
                "ims-exporter.service",
            ]);
        cmd
    };
    let dir = tempfile::tempdir().expect("tempdir");
    install(dir.path(), support::bin());
    let out = run_tool(verify(dir.path()), None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {SOCKET_UNIT} with {SOCKET_DROP_IN}:\n{}",
        describe(&out)
    );
    // And the drop-in is what was checked: one that runs a missing binary fails.
    let broken = tempfile::tempdir().expect("tempdir");
    install(broken.path(), "/nonexistent/ims-exporter");
    let out = run_tool(verify(broken.path()), None, TOOL_TIMEOUT).await;
    assert!(
        !out.status.success(),
        "verify must read the drop-in:\n{}",
        describe(&out)
    );
}

/// The systemd config reads the key pair from the files LoadCredential= provides, at the
/// fixed path systemd gives them (the config does not expand variables), and is a valid
/// config for the exporter.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_config_reads_the_unit_credentials() {
    let settings = unit_settings(&read(UNIT));
    let unit_name = Path::new(UNIT)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let creds_dir = format!("/run/credentials/{unit_name}");
    let ids: BTreeMap<String, String> = settings["LoadCredential"]
        .iter()
        .map(|v| {
            let (id, path) = v.split_once(':').unwrap();
            (id.to_string(), path.to_string())
        })
        .collect();
    let config = to_json(&yaml_file(SYSTEMD_CONFIG));
    for (key, id) in [
        ("access_key_id_file", "ak"),
        ("secret_access_key_file", "sk"),
    ] {
        assert!(
            ids.contains_key(id),
            "{UNIT}: LoadCredential={id}:… missing"
        );
        assert_eq!(
            str_at(&config, &format!("credentials.{key}")),
            format!("{creds_dir}/{id}"),
            "{SYSTEMD_CONFIG}: credentials.{key}"
        );
    }

    // The exporter accepts it, with the credential files where systemd would put them.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ak"), format!("{AK}\n")).unwrap();
    std::fs::write(dir.path().join("sk"), format!("{SK}\n")).unwrap();
    let text = read(SYSTEMD_CONFIG).replace(
        &format!("{creds_dir}/"),
        &format!("{}/", dir.path().display()),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let out = config_check(&path, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "--config.check {SYSTEMD_CONFIG}:\n{}",
        describe(&out)
    );
    assert!(
        stdout.contains(AK),
        "credentials must come from the files:\n{}",
        describe(&out)
    );
}

/// `ims-exporter --config.check` of `path` with only `envs` for credentials.
async fn config_check(path: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(support::bin());
    cmd.arg("--config.check")
        .arg("--config.file")
        .arg(path)
        .env_remove(ENV_AK)
        .env_remove(ENV_SK)
        .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_tool(cmd, None, TOOL_TIMEOUT).await
}

// ------------------------------------------------------------------------------------
// Kubernetes

/// The files a kustomization names: resources and generator inputs.
fn kustomization_files(dir: &Path) -> (Vec<String>, Vec<String>) {
    let k = to_json(&yaml_file(
        &dir.join("kustomization.yaml").to_string_lossy(),
    ));
    let list = |v: &Json| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("a file name").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let resources = list(&k["resources"]);
    let mut generated = Vec::new();
    for generator in ["configMapGenerator", "secretGenerator"] {
        for g in k[generator].as_array().into_iter().flatten() {
            for f in list(&g["files"]).into_iter().chain(list(&g["envs"])) {
                // `key=path` names the key; the file is the path.
                generated.push(f.split_once('=').map(|(_, p)| p.to_string()).unwrap_or(f));
            }
        }
    }
    (resources, generated)
}

/// The Kubernetes documents of the base as shipped, each with the file it came from.
fn shipped_manifests() -> Vec<(String, Json)> {
    let (resources, _) = kustomization_files(Path::new(KUSTOMIZE_BASE));
    let mut out = Vec::new();
    for r in resources {
        let path = format!("{KUSTOMIZE_BASE}/{r}");
        for doc in yaml_docs(&read(&path), &path) {
            out.push((path.clone(), to_json(&doc)));
        }
    }
    out
}

/// `kubectl kustomize` of the base, if kubectl is there (None: skipped).
async fn rendered_manifests() -> Option<Vec<(String, Json)>> {
    rendered(KUSTOMIZE_BASE).await
}

/// `kubectl kustomize` of `dir`, if kubectl is there (None: skipped).
async fn rendered(dir: &str) -> Option<Vec<(String, Json)>> {
    if !support::require_tool("kubectl") {
        return None;
    }
    let mut cmd = Command::new("kubectl");
    cmd.args(["kustomize", dir]);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}:\n{}",
        describe(&out)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let what = format!("kubectl kustomize {dir}");
    Some(
        yaml_docs(&text, &what)
            .iter()
            .map(|d| (what.clone(), to_json(d)))
            .collect(),
    )
}

fn is_custom_resource(doc: &Json) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
}

fn of_kind<'a>(docs: &'a [(String, Json)], kind: &str) -> &'a Json {
    match docs
        .iter()
        .filter(|(_, d)| d["kind"] == kind)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [(_, d)] => d,
        found => panic!("expected one {kind}, found {}", found.len()),
    }
}

/// kustomize has no command here that lists unused files: the YAML files in each
/// kustomization directory must be exactly those it names (resources, generator inputs,
/// itself), and a subdirectory with YAML in it must be a kustomization of its own.
#[test]
fn kustomization_names_exactly_the_files_present() {
    fn check(dir: &Path) {
        let (resources, generated) = kustomization_files(dir);
        let mut named: BTreeSet<String> = BTreeSet::from(["kustomization.yaml".to_string()]);
        let mut named_dirs = BTreeSet::new();
        for r in resources.iter().chain(&generated) {
            let path = dir.join(r);
            assert!(
                path.exists(),
                "{}/kustomization.yaml names {r}, which does not exist",
                dir.display()
            );
            if path.is_dir() {
                named_dirs.insert(r.trim_end_matches('/').to_string());
            } else {
                assert!(
                    named.insert(r.clone()),
                    "{}/kustomization.yaml names {r} twice",
                    dir.display()
                );
            }
        }
        let mut present = BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if path.join("kustomization.yaml").exists() {
                    check(&path);
                } else {
                    let yaml: Vec<_> = files_under(&path)
                        .into_iter()
                        .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                        .collect();
                    assert!(yaml.is_empty(), "{yaml:?}: YAML outside any kustomization");
                    assert!(
                        !named_dirs.contains(&name),
                        "{} is named as a resource but has no kustomization.yaml",
                        path.display()
                    );
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                present.insert(name);
            }
        }
        assert_eq!(
            present,
            named,
            "{}: the YAML files present and those kustomization.yaml names differ",
            dir.display()
        );
    }
    check(Path::new(KUSTOMIZE_BASE));
}

/// kustomize renders the base: the six objects, the generated ConfigMap holding
/// config.yaml and the Deployment mounting it by its hashed name.
#[tokio::test(flavor = "multi_thread")]
async fn kustomize_renders_the_base() {
    let Some(docs) = rendered_manifests().await else {
        return;
    };
    let kinds: BTreeSet<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Service",
            "ServiceMonitor"
        ])
    );
    assert_eq!(docs.len(), 6, "one object of each kind");
    let config_map = of_kind(&docs, "ConfigMap");
    assert_eq!(
        config_map["data"]["config.yaml"].as_str(),
        Some(read(format!("{KUSTOMIZE_BASE}/config.yaml")).as_str()),
        "the ConfigMap holds deploy/kubernetes/config.yaml"
    );
    let name = str_at(config_map, "metadata.name");
    assert!(
        name.starts_with("ims-exporter-config-"),
        "hash-suffixed name: {name}"
    );
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(
        str_at(deployment, "spec.template.spec.volumes.0.configMap.name"),
        name,
        "the Deployment mounts the generated ConfigMap"
    );
    // The state volume: the claim, mounted where --storage.path points, and a
    // strategy that never needs the ReadWriteOnce volume in two pods at once.
    let pvc = of_kind(&docs, "PersistentVolumeClaim");
    let claim = str_at(pvc, "metadata.name");
    assert_eq!(
        str_at(
            deployment,
            "spec.template.spec.volumes.1.persistentVolumeClaim.claimName"
        ),
        claim
    );
    assert_eq!(str_at(deployment, "spec.strategy.type"), "Recreate");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mount = str_at(container, "volumeMounts.1.mountPath");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(&format!("--storage.path={mount}"))),
        "--storage.path on the state volume: {container}"
    );
    // Everything else comes through unchanged.
    for (file, shipped) in shipped_manifests() {
        let kind = shipped["kind"].as_str().unwrap();
        let mut rendered = of_kind(&docs, kind).clone();
        if kind == "Deployment" {
            *rendered
                .pointer_mut("/spec/template/spec/volumes/0/configMap/name")
                .unwrap() = "ims-exporter-config".into();
        }
        assert_eq!(rendered, shipped, "{file}: kustomize changed it");
    }
}

/// Every core object, shipped and rendered, against the Kubernetes OpenAPI schemas
/// bundled in PyPI's kubernetes-validate, strictly (unknown fields fail).
#[tokio::test(flavor = "multi_thread")]
async fn core_manifests_validate_against_kubernetes_schemas() {
    if !support::require_tool("kubernetes-validate") {
        return;
    }
    let mut docs = shipped_manifests();
    docs.extend(rendered_manifests().await.unwrap_or_default());
    docs.retain(|(_, d)| !is_custom_resource(d));
    assert!(docs.len() >= 2, "the Deployment and Service at least");

    let validate = |docs: Vec<(String, Json)>| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("kubernetes-validate");
        cmd.arg("--strict");
        for (i, (_, doc)) in docs.iter().enumerate() {
            let path = dir.path().join(format!("{i}.yaml"));
            std::fs::write(&path, serde_yaml::to_string(doc).unwrap()).unwrap();
            cmd.arg(path);
        }
        let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
        drop(dir);
        out
    };
    let out = validate(docs.clone()).await;
    let stdout =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed = stdout
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert!(
        out.status.success() && passed == docs.len() && !stdout.contains("WARN"),
        "kubernetes-validate --strict ({} objects from {:?}):\n{}",
        docs.len(),
        docs.iter()
            .map(|(f, _)| f.as_str())
            .collect::<BTreeSet<_>>(),
        describe(&out)
    );

    // And it does reject: a misspelt field, a wrong type.
    let (file, deployment) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment")
        .cloned()
        .unwrap();
    let mut misspelt = deployment.clone();
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = serde_json::json!({});
    let mut mistyped = deployment;
    mistyped["spec"]["replicas"] = "one".into();
    for bad in [misspelt, mistyped] {
        let out = validate(vec![(file.clone(), bad)]).await;
        assert!(
            !out.status.success(),
            "kubernetes-validate accepted a broken Deployment:\n{}",
            describe(&out)
        );
    }
}

/// Validates `docs` with the npm package's schemas (its compiled JSON-schema validators);
/// one result per document: None if valid, else the error. None if the package is absent.
async fn validate_custom_resources(docs: &[Json]) -> Option<Vec<Option<String>>> {
    if !support::require_tool("node") {
        return None;
    }
    let tools = Path::new(SCHEMA_TOOLS);
    if !tools
        .join("node_modules")
        .join(SCHEMA_PACKAGE)
        .join("package.json")
        .exists()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "npm {SCHEMA_PACKAGE} is required under CI=true in {SCHEMA_TOOLS}; run the README's \
             test command, which installs it"
        );
        eprintln!("SKIPPED: npm {SCHEMA_PACKAGE} not installed in {SCHEMA_TOOLS} (run the README's test command)");
        return None;
    }
    // ES modules resolve from the working directory for --eval.
    const SCRIPT: &str = r#"
import { readFileSync } from "node:fs";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const docs = JSON.parse(readFileSync(0, "utf8"));
const results = docs.map((doc) => {
  const Model = v1[doc.kind];
  if (typeof Model !== "function" || Model.apiVersion !== doc.apiVersion) {
    return `no schema for ${doc.apiVersion} ${doc.kind}`;
  }
  try {
    new Model(doc).validate();
    return null;
  } catch (e) {
    return String(e && e.message ? e.message : e);
  }
});
process.stdout.write(JSON.stringify(results));
"#;
    let mut cmd = Command::new("node");
    cmd.current_dir(tools)
        .args(["--input-type=module", "--eval", SCRIPT]);
    let input = serde_json::to_string(docs).unwrap();
    let out = run_tool(cmd, Some(input), TOOL_TIMEOUT).await;
    assert!(
        out.status.success(),
        "node with {SCHEMA_PACKAGE}:\n{}",
        describe(&out)
    );
    let results: Vec<Option<String>> = serde_json::from_slice(&out.stdout).expect("results JSON");
    assert_eq!(results.len(), docs.len());
    Some(results)
}

/// The ServiceMonitor and PrometheusRule, shipped and rendered, against the Prometheus
/// Operator's monitoring.coreos.com/v1 schemas; broken copies must be refused.
#[tokio::test(flavor = "multi_thread")]
async fn custom_resources_validate_against_prometheus_operator_schemas() {
    let mut docs = shipped_manifests();
    docs.extend(rendered_manifests().await.unwrap_or_default());
    docs.retain(|(_, d)| is_custom_resource(d));
    let kinds: BTreeSet<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["PrometheusRule", "ServiceMonitor"]));

    let first = |kind: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == kind)
            .unwrap()
            .1
            .clone()
    };
    let mut bad_interval = first("ServiceMonitor");
    bad_interval["spec"]["endpoints"][0]["interval"] = "1 minute".into();
    let mut no_selector = first("ServiceMonitor");
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let mut no_expr = first("PrometheusRule");
    no_expr["spec"]["groups"][0]["rules"][0]
        .as_object_mut()
        .unwrap()
        .remove("expr");
    let mut bad_for = first("PrometheusRule");
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes".into();
    let broken = [bad_interval, no_selector, no_expr, bad_for];

    let mut all: Vec<Json> = docs.iter().map(|(_, d)| d.clone()).collect();
    all.extend(broken.iter().cloned());
    let Some(results) = validate_custom_resources(&all).await else {
        return;
    };
    let (good, bad) = results.split_at(docs.len());
    for ((file, doc), result) in docs.iter().zip(good) {
        assert!(
            result.is_none(),
            "{file}: {} is invalid: {}",
            doc["kind"],
            result.as_deref().unwrap()
        );
    }
    for (doc, result) in broken.iter().zip(bad) {
        let err = result
            .as_deref()
            .unwrap_or_else(|| panic!("the schemas accepted a broken {}", doc["kind"]));
        assert!(!err.starts_with("no schema"), "{err}");
    }
}

/// The Deployment runs the image locked down, probed, with limits, its config from the
/// ConfigMap and its key pair from the Secret; the Service, ServiceMonitor and image
/// agree on port, labels, user and paths, and the ServiceMonitor's job is the one the
/// alerts select.
#[test]
fn manifests_are_locked_down_and_agree_with_each_other() {
    let docs = shipped_manifests();
    let deployment = of_kind(&docs, "Deployment");
    let service = of_kind(&docs, "Service");
    let monitor = of_kind(&docs, "ServiceMonitor");
    let pod = at(deployment, "spec.template.spec");
    let pod_labels = at(deployment, "spec.template.metadata.labels");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Locked down.
    assert_eq!(at(&pod, "securityContext.runAsNonRoot"), true);
    assert_eq!(
        at(&pod, "securityContext.runAsUser"),
        IMAGE_UID,
        "the image's user"
    );
    assert_eq!(
        at(&pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "the exporter never calls the Kubernetes API"
    );
    assert_eq!(at(c, "securityContext.allowPrivilegeEscalation"), false);
    assert_eq!(at(c, "securityContext.readOnlyRootFilesystem"), true);
    assert_eq!(
        at(c, "securityContext.capabilities.drop"),
        serde_json::json!(["ALL"])
    );
    assert_eq!(at(c, "securityContext.capabilities.add"), Json::Null);
    for r in [
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ] {
        assert!(
            at(c, &format!("resources.{r}")).is_string(),
            "resources.{r}"
        );
    }

    // Probed on the exporter's endpoints, through the named port.
    assert_eq!(at(c, "livenessProbe.httpGet.path"), "/-/healthy");
    assert_eq!(at(c, "readinessProbe.httpGet.path"), "/-/ready");
    assert_eq!(at(c, "livenessProbe.httpGet.port"), PORT_NAME);
    assert_eq!(at(c, "readinessProbe.httpGet.port"), PORT_NAME);
    assert_eq!(at(c, "ports.0.name"), PORT_NAME);
    assert_eq!(at(c, "ports.0.containerPort"), PORT);

    // Config from the ConfigMap, at the path the image's CMD reads.
    let args: Vec<String> = serde_json::from_value(c["args"].clone()).expect("args");
    assert!(
        args.contains(&format!("--config.file={CONFIG_FILE}")),
        "{args:?}"
    );
    assert!(args
        .iter()
        .all(|a| !a.starts_with("--web.listen-address") || a.ends_with(&format!(":{PORT}"))));
    assert_eq!(at(c, "volumeMounts.0.mountPath"), CONFIG_DIR);
    assert_eq!(at(c, "volumeMounts.0.readOnly"), true);
    assert_eq!(at(c, "volumeMounts.0.name"), at(&pod, "volumes.0.name"));
    let k = to_json(&yaml_file(&format!("{KUSTOMIZE_BASE}/kustomization.yaml")));
    assert_eq!(
        at(&pod, "volumes.0.configMap.name"),
        at(&k, "configMapGenerator.0.name")
    );
    assert_eq!(
        at(&k, "configMapGenerator.0.files"),
        serde_json::json!(["config.yaml"]),
        "key config.yaml"
    );

    // The key pair from one Secret, by reference; no value in the manifests.
    let env: BTreeMap<String, Json> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    for var in [ENV_AK, ENV_SK] {
        let e = env.get(var).unwrap_or_else(|| panic!("env {var}"));
        assert_eq!(e["value"], Json::Null, "{var} must not be inline");
        assert_eq!(
            at(e, "valueFrom.secretKeyRef.name"),
            "ims-exporter-credentials"
        );
        assert_eq!(at(e, "valueFrom.secretKeyRef.key"), var);
    }
    assert!(
        docs.iter().all(|(_, d)| d["kind"] != "Secret"),
        "the Secret is created by the user"
    );

    // The Deployment's selector, the Service's and the ServiceMonitor's fit together.
    let matches = |selector: &Json, labels: &Json| {
        selector
            .as_object()
            .expect("selector")
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(matches(
        &at(deployment, "spec.selector.matchLabels"),
        &pod_labels
    ));
    assert!(matches(&at(service, "spec.selector"), &pod_labels));
    assert!(matches(
        &at(monitor, "spec.selector.matchLabels"),
        &at(service, "metadata.labels")
    ));
    assert_eq!(at(service, "spec.ports.0.name"), PORT_NAME);
    assert_eq!(at(service, "spec.ports.0.port"), PORT);
    assert_eq!(at(service, "spec.ports.0.targetPort"), PORT_NAME);
    let endpoint = at(monitor, "spec.endpoints.0");
    assert_eq!(endpoint["port"], PORT_NAME);
    assert!(matches!(endpoint["path"].as_str(), None | Some("/metrics")));

    // The alerts select the scrape job by name (ImsExporterDown): the ServiceMonitor
    // must produce that job.
    let job_relabel = endpoint["relabelings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["targetLabel"] == "job")
        .expect("a relabeling that sets the job label");
    let job = job_relabel["replacement"]
        .as_str()
        .expect("job replacement");
    assert!(matches!(
        job_relabel["action"].as_str(),
        None | Some("replace")
    ));
    let rules = read(RULES);
    let jobs: BTreeSet<&str> = Regex::new(r#"job\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures_iter(&rules)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(!jobs.is_empty(), "{RULES} selects a job");
    assert_eq!(
        jobs,
        BTreeSet::from([job]),
        "the job the alerts select and the ServiceMonitor's"
    );
}

/// The exporter accepts the Kubernetes config, with the key pair from the environment
/// the Secret fills.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_config_is_valid_for_the_exporter() {
    let path = PathBuf::from(format!("{KUSTOMIZE_BASE}/config.yaml"));
    let config = to_json(&yaml_file(&path.to_string_lossy()));
    assert_eq!(
        config["credentials"],
        Json::Null,
        "credentials come from the Secret's environment"
    );
    let out = config_check(&path, &[(ENV_AK, AK), (ENV_SK, SK)]).await;
    assert!(
        out.status.success(),
        "--config.check {}:\n{}",
        path.display(),
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(AK),
        "{}",
        describe(&out)
    );
    // Without them it is refused, as a pod without the Secret would be.
    let out = config_check(&path, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// The PrometheusRule holds exactly the groups of the shipped rules file, and the
/// generator script reproduces it.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_rule_matches_the_rules_file() {
    let rules = to_json(&yaml_file(RULES));
    let rule = to_json(&yaml_file(PROMETHEUS_RULE));
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(
        rules["groups"].as_array().is_some_and(|g| !g.is_empty()),
        "{RULES} has groups"
    );
    assert!(
        rule["spec"]["groups"] == rules["groups"],
        "{PROMETHEUS_RULE} has drifted from {RULES}: regenerate it with `sh {GENERATE_RULE}`"
    );
    let spec_keys: Vec<&String> = rule["spec"].as_object().unwrap().keys().collect();
    assert_eq!(spec_keys, ["groups"]);
    let rules_keys: Vec<&String> = rules.as_object().unwrap().keys().collect();
    assert_eq!(
        rules_keys,
        ["groups"],
        "{RULES} has keys a PrometheusRule would not carry"
    );

    // The script writes the same document.
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("prometheusrule.yaml");
    let mut cmd = Command::new("sh");
    cmd.arg(GENERATE_RULE).arg(&out_path);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(out.status.success(), "{GENERATE_RULE}:\n{}", describe(&out));
    let generated = to_json(&yaml_file(&out_path.to_string_lossy()));
    assert!(
        generated == rule,
        "{GENERATE_RULE} does not reproduce {PROMETHEUS_RULE}: run it and commit the result"
    );
}

/// The sharded variant: a StatefulSet instead of the Deployment, `--shard.count` equal
/// to its replicas, and each pod's ordinal as `SHARD_INDEX`.
#[tokio::test(flavor = "multi_thread")]
async fn sharded_overlay_renders_a_statefulset_of_shards() {
    let Some(docs) = rendered("deploy/kubernetes-sharded").await else {
        return;
    };
    let kinds: BTreeSet<String> = docs.iter().map(|(_, d)| str_at(d, "kind")).collect();
    assert!(
        !kinds.contains("Deployment") && kinds.contains("StatefulSet"),
        "{kinds:?}"
    );
    let set = of_kind(&docs, "StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&format!("--shard.count={replicas}").as_str()),
        "{args:?}"
    );
    let env = container["env"].as_array().unwrap();
    let index = env
        .iter()
        .find(|e| e["name"] == "SHARD_INDEX")
        .expect("SHARD_INDEX");
    assert_eq!(
        index["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    // The generated ConfigMap's name reaches the StatefulSet too.
    let cm = str_at(of_kind(&docs, "ConfigMap"), "metadata.name");
    assert_eq!(
        set["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cm.as_str()
    );

    if !support::require_tool("kubernetes-validate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statefulset.yaml");
    std::fs::write(&path, serde_yaml::to_string(set).unwrap()).unwrap();
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict").arg(&path);
    let out = run_tool(cmd, None, TOOL_TIMEOUT).await;
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("WARN"),
        "{}",
        describe(&out)
    );
}
