//! `incoming:` and `targets[].incoming`: the owners whose images offered to a target
//! are trusted (entries as for allowlists, and a file re-read at every listing), or
//! `incoming: false` for a target that lists none.

use std::path::Path;

use super::file::{FileTarget, FileTargetIncoming};
use super::types::Fail;
use crate::allowlist::{Allowlist, AllowlistFile, Entry};

/// `targets[ti].incoming`: the top-level trusted owners and the target's own, unless
/// the target opted out (`incoming: false`) or `incoming:` is not set.
pub(super) fn target_incoming(
    ti: usize,
    t: &FileTarget,
    trusted: Option<&Allowlist>,
) -> Result<Option<Allowlist>, Fail> {
    let Some(top) = trusted else {
        return match &t.incoming {
            None | Some(FileTargetIncoming::Enabled(false)) => Ok(None),
            Some(_) => Err((
                format!("targets[{ti}].incoming"),
                "needs the top-level incoming: block (which turns listing on)".into(),
            )),
        };
    };
    match &t.incoming {
        Some(FileTargetIncoming::Enabled(false)) => Ok(None),
        None | Some(FileTargetIncoming::Enabled(true)) => Ok(Some(top.clone())),
        Some(FileTargetIncoming::Block(b)) => {
            let own = trusted_owners(
                &b.trusted_owners,
                b.trusted_owners_file.as_deref(),
                &format!("targets[{ti}].incoming."),
            )?;
            Ok(Some(Allowlist::merge(&[top, &own])))
        }
    }
}

/// Trusted owner entries (owner IDs, globs as for allowlists) and their file.
pub(super) fn trusted_owners(
    entries: &[String],
    file: Option<&Path>,
    prefix: &str,
) -> Result<Allowlist, Fail> {
    let mut out = Allowlist::default();
    for (i, e) in entries.iter().enumerate() {
        std::sync::Arc::make_mut(&mut out.entries)
            .push(Entry::parse(e).map_err(|m| (format!("{prefix}trusted_owners[{i}]"), m))?);
    }
    if let Some(path) = file {
        out.files.push(
            AllowlistFile::load(path).map_err(|m| (format!("{prefix}trusted_owners_file"), m))?,
        );
    }
    Ok(out)
}
