//! Every relative link in the documentation resolves.
//!
//! In every Markdown file of the repository (`README.md`, `BENCHMARKS.md`, `docs/`,
//! `deploy/` …): Markdown links and images (`[text](path)`, `![alt](path)`, reference
//! definitions `[label]: path`) and HTML `src=`/`href=` attributes, outside code blocks
//! and code spans. In every other text file (deploy files, the Dockerfile, the alert
//! rules, sources and tests): references to Markdown files such as
//! `docs/operations.md#hardening` or `README.md#metrics`, taken from the top of the
//! repository, and the dashboards' `${readme_url}#anchor` links into the README.
//!
//! The target must exist; an `#anchor` into a Markdown file must be one of its headings
//! (GitHub's slugs: lowercase, spaces to `-`, punctuation dropped, `-1`, `-2` … for
//! repeats) or an HTML `id`/`name` in it. Links with a scheme (`https:`, `mailto:` …)
//! are not checked. A failure lists every dangling link with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Directories never searched when git cannot list the files.
const SKIP_DIRS: [&str; 3] = [".git", "target", "node_modules"];
/// This file: its examples of broken links are data, not links.
const SELF: &str = "tests/it/docs.rs";

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = repository_files(root);
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "README.md not found among {} files",
        files.len()
    );
    let markdown = files.iter().filter(|f| is_markdown(f)).count();
    assert!(markdown >= 2, "only {markdown} Markdown files found");
    let (checked, dangling) = check(root, &files);
    // A parser that found nothing would pass: the docs hold well over a hundred links.
    assert!(checked >= 100, "only {checked} relative links found");
    assert!(
        dangling.is_empty(),
        "{} dangling link(s):\n{}",
        dangling.len(),
        dangling.join("\n")
    );
}

/// The checker itself: a broken path, a broken anchor, each with file and line; code,
/// URLs and good links are left alone.
#[test]
fn dangling_links_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "README.md",
        "# Title\n\
         \n\
         ## State across restarts (`--storage.path`)\n\
         \n\
         See [guide](docs/guide.md#setup-steps) and [here](#title), [web](https://x.test/a.md).\n\
         Broken: [gone](docs/missing.md) and [anchor](docs/guide.md#nope).\n\
         ```sh\n\
         [not a link](nowhere.md)\n\
         ```\n\
         `[code](nowhere.md)` ![shot](docs/pic.png) <img src=\"docs/none.png\">\n\
         [self](#state-across-restarts---storagepath) [dup](docs/guide.md#faq-1)\n",
    );
    write(
        "docs/guide.md",
        "Guide\n=====\n\n## Setup steps\n\n## FAQ\n\n## FAQ\n\n[up](../README.md#title)\n",
    );
    write("docs/pic.png", "");
    write(
        "deploy/unit.service",
        "# Steps: docs/guide.md#setup-steps, README.md#gone, docs/old.md.\n\
         # https://example.test/README.md is a URL.\n",
    );
    write(
        "dash.json",
        "{\"url\": \"${readme_url}#title\", \"other\": \"${readme_url}#metrics\"}\n",
    );
    let files: Vec<PathBuf> = [
        "README.md",
        "docs/guide.md",
        "docs/pic.png",
        "deploy/unit.service",
        "dash.json",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let (checked, dangling) = check(root, &files);
    assert_eq!(checked, 14, "{dangling:#?}");
    assert_eq!(
        dangling,
        [
            "README.md:6: docs/missing.md: no such file",
            "README.md:6: docs/guide.md#nope: no heading or anchor `nope` in docs/guide.md",
            "README.md:10: docs/none.png: no such file",
            "deploy/unit.service:1: README.md#gone: no heading or anchor `gone` in README.md",
            "deploy/unit.service:1: docs/old.md: no such file",
            "dash.json:1: ${readme_url}#metrics: no heading or anchor `metrics` in README.md",
        ],
        "{dangling:#?}"
    );
}

#[test]
fn slugs_follow_github() {
    let cases = [
        (
            "Try it in seconds (no cloud account)",
            "try-it-in-seconds-no-cloud-account",
        ),
        (
            "Unexpected shares: allowlists",
            "unexpected-shares-allowlists",
        ),
        (
            "State across restarts (`--storage.path`)",
            "state-across-restarts---storagepath",
        ),
        (
            "Share browser (`/shares`) at scale",
            "share-browser-shares-at-scale",
        ),
        (
            "What changed, and how it was found",
            "what-changed-and-how-it-was-found",
        ),
        (
            "Kubernetes (Prometheus Operator)",
            "kubernetes-prometheus-operator",
        ),
        ("The [README](../README.md) link", "the-readme-link"),
        ("snake_case and CAPS", "snake_case-and-caps"),
    ];
    for (heading, slug) in cases {
        assert_eq!(github_slug(heading), slug, "{heading}");
    }
}

// ---------------------------------------------------------------------------------
// Finding the files.

/// The repository's files, relative to `root`: what git tracks or would track
/// (untracked files that are not ignored included), else a walk of the tree.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .filter(|f| root.join(f).is_file())
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(root, Path::new(""), &mut found);
            found
        }
    };
    files.sort();
    files.dedup();
    files
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let rel = rel.join(&name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                walk(root, &rel, out);
            }
        } else if kind.is_file() {
            out.push(rel);
        }
    }
}

fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "md")
}

// ---------------------------------------------------------------------------------
// Checking.

/// A link found in a file: its line (1-based) and target as written.
struct Link {
    line: usize,
    target: String,
}

/// How many relative links `files` (relative to `root`) hold, and every dangling one,
/// as `file:line: target: why`.
fn check(root: &Path, files: &[PathBuf]) -> (usize, Vec<String>) {
    let mut anchors = Anchors::default();
    let mut checked = 0;
    let mut dangling = Vec::new();
    for file in files {
        if file == Path::new(SELF) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue; // not text
        };
        let shown = file.display().to_string().replace('\\', "/");
        if is_markdown(file) {
            let dir = file.parent().unwrap_or(Path::new(""));
            for link in markdown_links(&text) {
                checked += 1;
                if let Err(why) = resolve(root, dir, &link.target, file, &mut anchors) {
                    dangling.push(format!("{shown}:{}: {}: {why}", link.line, link.target));
                }
            }
        } else {
            for link in readme_url_links(&text) {
                checked += 1;
                let anchor = link.target.trim_start_matches("${readme_url}");
                let target = format!("README.md{anchor}");
                if let Err(why) = resolve(root, Path::new(""), &target, file, &mut anchors) {
                    dangling.push(format!("{shown}:{}: {}: {why}", link.line, link.target));
                }
            }
            for link in markdown_references(&text) {
                checked += 1;
                // From the top of the repository; else from the file's own directory.
                let here = file.parent().unwrap_or(Path::new(""));
                let result = resolve(root, Path::new(""), &link.target, file, &mut anchors)
                    .or_else(|e| {
                        resolve(root, here, &link.target, file, &mut anchors).map_err(|_| e)
                    });
                if let Err(why) = result {
                    dangling.push(format!("{shown}:{}: {}: {why}", link.line, link.target));
                }
            }
        }
    }
    (checked, dangling)
}

/// Checks one relative link written in `from` (in directory `dir`).
fn resolve(
    root: &Path,
    dir: &Path,
    target: &str,
    from: &Path,
    anchors: &mut Anchors,
) -> Result<(), String> {
    let target = percent_decode(target);
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target.as_str(), None),
    };
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rel = if path.is_empty() {
        from.to_path_buf()
    } else if let Some(abs) = path.strip_prefix('/') {
        normalize(Path::new(abs)).ok_or("leaves the repository")?
    } else {
        normalize(&dir.join(path)).ok_or("leaves the repository")?
    };
    let full = root.join(&rel);
    if !full.exists() {
        return Err("no such file".into());
    }
    match anchor {
        Some(anchor) if !anchor.is_empty() && full.is_file() && is_markdown(&rel) => {
            if anchors.of(&full).contains(anchor) {
                Ok(())
            } else {
                let shown = rel.display().to_string().replace('\\', "/");
                Err(format!("no heading or anchor `{anchor}` in {shown}"))
            }
        }
        _ => Ok(()),
    }
}

/// `a/b/../c` → `a/c`; `None` when `..` climbs above the top.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a link target names a scheme (`https:`, `mailto:` …) or another host.
fn is_external(target: &str) -> bool {
    if target.starts_with("//") {
        return true;
    }
    match target.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------
// Anchors.

/// The anchors of each Markdown file, read once.
#[derive(Default)]
struct Anchors(BTreeMap<PathBuf, BTreeSet<String>>);

impl Anchors {
    fn of(&mut self, path: &Path) -> &BTreeSet<String> {
        self.0
            .entry(path.to_path_buf())
            .or_insert_with(|| anchors_of(&std::fs::read_to_string(path).unwrap_or_default()))
    }
}

/// The heading slugs (GitHub's, with `-1`, `-2` … for repeats) and HTML `id`/`name`
/// attributes of a Markdown text.
fn anchors_of(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut add = |slug: String, out: &mut BTreeSet<String>| {
        let n = seen.entry(slug.clone()).or_insert(0);
        if *n == 0 {
            out.insert(slug);
        } else {
            out.insert(format!("{slug}-{n}"));
        }
        *n += 1;
    };
    let mut previous: Option<&str> = None;
    for (line, in_code) in lines_with_fences(text) {
        if in_code {
            previous = None;
            continue;
        }
        if let Some(heading) = atx_heading(line) {
            add(github_slug(heading), &mut out);
            previous = None;
            continue;
        }
        let t = line.trim();
        let underline =
            !t.is_empty() && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'));
        match previous {
            Some(p) if underline && !line.starts_with("    ") => {
                add(github_slug(p.trim()), &mut out);
                previous = None;
            }
            _ => {
                let plain = !t.is_empty()
                    && !t.starts_with(['|', '-', '*', '>', '<'])
                    && !t.starts_with(|c: char| c.is_ascii_digit());
                previous = plain.then_some(line);
            }
        }
        for attr in ["id=\"", "name=\""] {
            for value in attribute_values(line, attr) {
                out.insert(value.to_string());
            }
        }
    }
    out
}

/// The text of an ATX heading (`## Title ##` → `Title`).
fn atx_heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let t = &line[indent..];
    let hashes = t.chars().take_while(|&c| c == '#').count();
    if hashes == 0 || hashes > 6 {
        return None;
    }
    let rest = &t[hashes..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    let closed = rest.trim_end_matches('#');
    let rest = if closed.len() < rest.len() && (closed.is_empty() || closed.ends_with(' ')) {
        closed.trim_end()
    } else {
        rest
    };
    Some(rest)
}

/// GitHub's anchor for a heading: the rendered text lowercased, every character but
/// letters, digits, `_`, `-` and spaces dropped, spaces turned into `-`.
fn github_slug(heading: &str) -> String {
    let text = strip_link_targets(heading);
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            slug.extend(c.to_lowercase());
        } else if c == ' ' {
            slug.push('-');
        }
    }
    slug
}

/// `[text](url)` → `text`, as the heading is rendered.
fn strip_link_targets(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("](") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match closing_paren(after) {
            Some(end) => rest = &after[end + 1..],
            None => {
                out.push_str("](");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace('[', "")
}

// ---------------------------------------------------------------------------------
// Links in Markdown.

/// Each line with whether it is inside a fenced code block (fences included).
fn lines_with_fences(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let marker = t.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| t.chars().take_while(|&c| c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                out.push((line, true));
            }
            (Some((m, n)), Some(c)) if c == m && run >= n && t[run..].trim().is_empty() => {
                fence = None;
                out.push((line, true));
            }
            (Some(_), _) => out.push((line, true)),
            (None, _) => out.push((line, false)),
        }
    }
    out
}

/// The line with its code spans blanked out.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The closing run of the same length, if any.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.extend(std::iter::repeat_n(' ', j + run - i));
                i = j + run;
            }
            None => {
                out.extend(std::iter::repeat_n('`', run));
                i += run;
            }
        }
    }
    out
}

/// The relative links of a Markdown text.
fn markdown_links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    for (n, (line, in_code)) in lines_with_fences(text).into_iter().enumerate() {
        if in_code {
            continue;
        }
        let line = without_code_spans(line);
        let mut targets = Vec::new();
        // Inline links and images: `](target)` or `](target "title")`.
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            match closing_paren(after) {
                Some(end) => {
                    targets.push(link_destination(&after[..end]));
                    rest = &after[end + 1..];
                }
                None => rest = after,
            }
        }
        // Reference definitions: `[label]: target`.
        let t = line.trim_start();
        if t.starts_with('[') && !t.starts_with("[^") {
            if let Some((label, def)) = t[1..].split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    targets.push(link_destination(def));
                }
            }
        }
        // HTML: `<img src="…">`, `<a href="…">`.
        for attr in ["src=\"", "href=\""] {
            for value in attribute_values(&line, attr) {
                targets.push(value.to_string());
            }
        }
        for target in targets {
            if !target.is_empty() && !is_external(&target) {
                links.push(Link {
                    line: n + 1,
                    target,
                });
            }
        }
    }
    links
}

/// The index of the `)` that closes a link destination (parentheses may nest).
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_angle = false;
    for (i, c) in s.char_indices() {
        match c {
            '<' if i == 0 => in_angle = true,
            '>' if in_angle => in_angle = false,
            '(' if !in_angle => depth += 1,
            ')' if !in_angle => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// The destination of `target "title"` or `<target> "title"`.
fn link_destination(inner: &str) -> String {
    let inner = inner.trim();
    if let Some(rest) = inner.strip_prefix('<') {
        return rest.split('>').next().unwrap_or("").to_string();
    }
    inner.split_whitespace().next().unwrap_or("").to_string()
}

/// The values of `attr"value"` occurrences (`attr` ends with `="`).
fn attribute_values<'a>(line: &'a str, attr: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(attr) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + attr.len()..];
        let Some(end) = after.find('"') else {
            break;
        };
        if before.is_none_or(|c| c.is_whitespace()) {
            out.push(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    out
}

// ---------------------------------------------------------------------------------
// References in other files.

/// Characters of a path written in prose or a comment.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./-".contains(c)
}

/// References to Markdown files (`docs/operations.md#hardening`, `README.md`) in a
/// file that is not Markdown; URLs (`https://…/README.md`) are skipped.
fn markdown_references(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(i) = line[from..].find(".md") {
            let end = from + i + 3;
            from = end;
            if line[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `.mdx`, `.md_file`
            }
            let start = line[..end - 3]
                .char_indices()
                .rev()
                .take_while(|&(_, c)| is_path_char(c))
                .last()
                .map_or(end - 3, |(j, _)| j);
            let path = &line[start..end];
            let name = path.rsplit('/').next().unwrap_or("");
            if name == ".md" || path.starts_with("//") || line[..start].ends_with(':') {
                continue;
            }
            let anchor: String = line[end..]
                .strip_prefix('#')
                .map(|a| {
                    a.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect()
                })
                .unwrap_or_default();
            let target = if anchor.is_empty() {
                path.to_string()
            } else {
                format!("{path}#{anchor}")
            };
            links.push(Link {
                line: n + 1,
                target,
            });
        }
    }
    links
}

/// The dashboards' links into the README: `${readme_url}#anchor`.
fn readme_url_links(text: &str) -> Vec<Link> {
    const VAR: &str = "${readme_url}#";
    let mut links = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find(VAR) {
            let after = &rest[i + VAR.len()..];
            let anchor: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            links.push(Link {
                line: n + 1,
                target: format!("${{readme_url}}#{anchor}"),
            });
            rest = after;
        }
    }
    links
}
