//! Allowlists: which recipients an image may be shared with.
//!
//! An entry matches a member ID exactly, or as a glob (`*`, `?`), or — when it starts
//! with `urn:` — an organization member's URN (glob allowed). A member that no
//! applicable entry matches is *unexpected*, whatever its status: a rejected recipient
//! can still boot the image. An image with no entries at all denies everything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// One allowlist entry, validated and pre-split for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Glob over `member_id`.
    MemberId(Glob),
    /// Glob over the member's URN (entry written with the `urn:` prefix, which the API's
    /// URNs lack).
    Urn(Glob),
}

/// A glob pattern, classified once: every member of every poll is matched against
/// every entry, and most entries are an exact ID or a prefix such as `ou-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    kind: GlobKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobKind {
    Exact,
    /// The pattern is the prefix and one final `*`.
    Prefix,
    Wild,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let wild = |s: &str| s.bytes().any(|b| b == b'*' || b == b'?');
        let kind = match pattern.strip_suffix('*') {
            _ if !wild(pattern) => GlobKind::Exact,
            Some(prefix) if !wild(prefix) => GlobKind::Prefix,
            _ => GlobKind::Wild,
        };
        Glob {
            pattern: pattern.to_string(),
            kind,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self.kind {
            GlobKind::Exact => self.pattern == text,
            GlobKind::Prefix => text.starts_with(&self.pattern[..self.pattern.len() - 1]),
            GlobKind::Wild => glob_match(&self.pattern, text),
        }
    }
}

impl From<&str> for Glob {
    fn from(pattern: &str) -> Self {
        Glob::new(pattern)
    }
}

impl Entry {
    pub fn parse(s: &str) -> Result<Entry, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an allowlist entry must not be empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("allowlist entry {s:?} contains white space"));
        }
        Ok(match s.strip_prefix("urn:") {
            Some(rest) if !rest.is_empty() => Entry::Urn(Glob::new(rest)),
            Some(_) => return Err("a urn: entry needs a URN after the prefix".into()),
            None => Entry::MemberId(Glob::new(s)),
        })
    }

    pub fn matches(&self, member_id: &str, urn: &str) -> bool {
        match self {
            Entry::MemberId(p) => p.matches(member_id),
            Entry::Urn(p) => !urn.is_empty() && p.matches(urn.strip_prefix("urn:").unwrap_or(urn)),
        }
    }
}

/// `*` matches any run of characters (including none), `?` exactly one. The general
/// match: [`Glob`] takes the common patterns (an exact ID, a prefix) without it. It
/// does not allocate for ASCII (every IMS ID and URN is ASCII).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob_slices(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_slices(&p, &t, '*', '?')
}

/// Iterative wildcard match with single-star backtracking (linear for one `*`,
/// O(p × t) at worst).
fn glob_slices<T: PartialEq + Copy>(p: &[T], t: &[T], star_sym: T, one_sym: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one_sym || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star_sym {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star_sym)
}

/// Parses an allowlist file: one entry a line, `#` starts a comment.
pub fn parse_file(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(Entry::parse(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

fn read_file(path: &Path) -> std::io::Result<String> {
    crate::files::read_text_capped(path, crate::files::MAX_ALLOWLIST_BYTES)
}

/// An allowlist file as read when the config was loaded: a value the config carries.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowlistFile {
    pub path: PathBuf,
    pub entries: Arc<Vec<Entry>>,
}

impl AllowlistFile {
    /// Reads the file once; at start or reload a broken file is a config error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = read_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let entries = parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AllowlistFile {
            path: path.to_path_buf(),
            entries: Arc::new(entries),
        })
    }
}

/// The allowlist sources that apply to one image, in no particular order (values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowlist {
    /// Shared: a fleet's images mostly have the same entries (the top level's).
    pub entries: Arc<Vec<Entry>>,
    pub files: Vec<AllowlistFile>,
}

impl Allowlist {
    /// Combines sources (global, target, image).
    pub fn merge(parts: &[&Allowlist]) -> Allowlist {
        let mut with_entries = parts.iter().filter(|p| !p.entries.is_empty());
        let entries = match (with_entries.next(), with_entries.next()) {
            (None, _) => Arc::default(),
            // One source of entries: its list is shared, not copied.
            (Some(only), None) => only.entries.clone(),
            _ => Arc::new(
                parts
                    .iter()
                    .flat_map(|p| p.entries.iter().cloned())
                    .collect(),
            ),
        };
        Allowlist {
            entries,
            files: parts.iter().flat_map(|p| p.files.iter().cloned()).collect(),
        }
    }
}

/// An allowlist file, re-read on every poll so that a security team can edit it
/// without restarting the exporter. A read or parse failure keeps the last good
/// contents (and is logged), so a half-saved file never flips every share to
/// unexpected. Reads run on a blocking thread with a deadline, one at a time: a file
/// that hangs (a FIFO, a dead NFS mount) keeps its last entries and stalls nothing.
#[derive(Debug)]
pub struct WatchedFile {
    pub path: PathBuf,
    entries: ArcSwap<Vec<Entry>>,
    /// A read is under way (or hung); polls meanwhile use the entries in force.
    reading: Arc<AtomicBool>,
}

impl WatchedFile {
    /// Starts from what the config read.
    pub fn new(file: &AllowlistFile) -> Self {
        WatchedFile {
            path: file.path.clone(),
            entries: ArcSwap::new(file.entries.clone()),
            reading: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Re-reads the file; returns the entries now in force.
    pub async fn refresh(&self) -> Arc<Vec<Entry>> {
        if self.reading.swap(true, Ordering::AcqRel) {
            return self.entries.load_full();
        }
        let (path, reading) = (self.path.clone(), self.reading.clone());
        let read = crate::files::off_runtime(crate::files::READ_TIMEOUT, move || {
            let result = read_file(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_file(&t));
            reading.store(false, Ordering::Release);
            result
        })
        .await
        .and_then(|r| r);
        match read {
            Ok(entries) => {
                if **self.entries.load() != entries {
                    tracing::info!(file = %self.path.display(), entries = entries.len(), "allowlist file changed");
                    self.entries.store(Arc::new(entries));
                }
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot re-read allowlist file; keeping its previous entries")
            }
        }
        self.entries.load_full()
    }
}

/// The watched files of one runtime plan, one per path, so that images sharing a file
/// share its reads and its last good entries.
#[derive(Debug, Default)]
pub struct WatchedFiles(Mutex<HashMap<PathBuf, Arc<WatchedFile>>>);

impl WatchedFiles {
    /// The live form of `allowlist`.
    pub fn live(&self, allowlist: &Allowlist) -> LiveAllowlist {
        let mut files = self.0.lock().unwrap_or_else(|e| e.into_inner());
        LiveAllowlist {
            entries: allowlist.entries.clone(),
            files: allowlist
                .files
                .iter()
                .map(|f| {
                    files
                        .entry(f.path.clone())
                        .or_insert_with(|| Arc::new(WatchedFile::new(f)))
                        .clone()
                })
                .collect(),
        }
    }
}

/// The allowlist of one image as polls apply it: its entries and its watched files.
#[derive(Debug, Clone, Default)]
pub struct LiveAllowlist {
    entries: Arc<Vec<Entry>>,
    files: Vec<Arc<WatchedFile>>,
}

impl LiveAllowlist {
    /// The entries in force now (files re-read).
    pub async fn current(&self) -> Arc<Vec<Entry>> {
        if self.files.is_empty() {
            return self.entries.clone();
        }
        let mut out = Vec::clone(&self.entries);
        for f in &self.files {
            out.extend(f.refresh().await.iter().cloned());
        }
        Arc::new(out)
    }
}

/// Whether a member is unexpected under `entries` (deny by default).
pub fn is_unexpected(entries: &[Entry], member_id: &str, urn: &str) -> bool {
    !entries.iter().any(|e| e.matches(member_id, urn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";

    #[test]
    fn a_classified_glob_matches_as_the_glob_does() {
        let patterns = [
            "x", "", "*", "**", "ou-*", "ou-*-*", "?*", "a?c", "*ß", "ü?x", "a*b",
        ];
        let texts = [
            "", "x", "ou-", "ou-abc", "ou-a-b", "abc", "ac", "aaß", "üßx", "axxb",
        ];
        for p in patterns {
            for t in texts {
                assert_eq!(Glob::new(p).matches(t), glob_match(p, t), "{p:?} on {t:?}");
            }
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("ou-*", "ou-abc"));
        assert!(glob_match("ou-*", "ou-"));
        assert!(!glob_match("ou-*", "o"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        // Non-ASCII takes the char path: `?` is one character, not one byte.
        assert!(glob_match("ü?x", "üßx"));
        assert!(glob_match("*ß", "aaß"));
        assert!(!glob_match("?", "ßß"));
    }

    #[test]
    fn entries_match_ids_globs_and_urns() {
        let id = Entry::parse("edc89b490d7d4392898e19b2deb34797").unwrap();
        assert!(id.matches("edc89b490d7d4392898e19b2deb34797", ""));
        assert!(!id.matches("edc89b490d7d4392898e19b2deb34798", ""));
        let glob = Entry::parse("ou-*").unwrap();
        assert!(glob.matches("ou-qdjrky7i07higfa4f6reqv9etybmp4ng", URN));
        let urn = Entry::parse("urn:organizations::6c03*:ou:o-z514*/*").unwrap();
        assert!(urn.matches("ou-qdjrky7i07higfa4f6reqv9etybmp4ng", URN));
        assert!(!urn.matches(
            "ou-qdjrky7i07higfa4f6reqv9etybmp4ng",
            "organizations::ffff:ou:o-z514/x"
        ));
        assert!(
            !urn.matches("anything", ""),
            "URN entries never match members without a URN"
        );
        assert!(Entry::parse("urn:").is_err());
        assert!(Entry::parse("a b").is_err());
    }

    #[test]
    fn deny_by_default() {
        assert!(is_unexpected(&[], "x", ""));
        assert!(!is_unexpected(&[Entry::parse("x").unwrap()], "x", ""));
    }

    #[tokio::test]
    async fn file_with_comments_and_reload_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allow.txt");
        std::fs::write(
            &path,
            "# security team list\nou-*   # all OUs\n\nedc89b490d7d4392898e19b2deb34797\n",
        )
        .unwrap();
        let f = WatchedFile::new(&AllowlistFile::load(&path).unwrap());
        assert_eq!(f.refresh().await.len(), 2);
        std::fs::write(&path, "new-one\n").unwrap();
        assert_eq!(*f.refresh().await, vec![Entry::MemberId("new-one".into())]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            *f.refresh().await,
            vec![Entry::MemberId("new-one".into())],
            "a vanished file keeps the last entries"
        );
    }
}
