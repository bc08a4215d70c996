//! Validated identifiers. A path to the API can only be built from these, so a
//! malformed ID is refused once, at the edge (config), never sent.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A project ID: 32 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectId(String);

impl ProjectId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 32 && is_hex(s) {
            Ok(ProjectId(s.to_string()))
        } else {
            Err(IdError(format!("must be 32 hex characters, got {s:?}")))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An image ID: a UUID (`8-4-4-4-12` hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageId(String);

impl ImageId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens == [8, 4, 4, 4, 12] && groups.iter().all(|g| is_hex(g)) {
            Ok(ImageId(s.to_string()))
        } else {
            Err(IdError(format!(
                "must be a UUID like d164b5df-1bc3-4c3f-893e-3e471fd16e64, got {s:?}"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member (recipient) ID: a project ID, an account (domain) ID or an organization
/// unit/path ID. Letters, digits, `-` and `_` only, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);

impl MemberId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(MemberId(s.to_string()))
        } else {
            Err(IdError(format!(
                "must be 1-128 letters, digits, '-' or '_', got {s:?}"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(ProjectId, ImageId, MemberId);

/// Where an image to monitor came from; the `source` label of `ims_image_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Discovery,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Discovery => "discovery",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids() {
        assert!(ProjectId::parse("1bed856811654c1cb661a6ca845ebc77").is_ok());
        assert!(ProjectId::parse("1bed856811654c1cb661a6ca845ebc7").is_err());
        assert!(ProjectId::parse("1bed856811654c1cb661a6ca845ebc7z").is_err());
    }

    #[test]
    fn image_ids() {
        assert!(ImageId::parse("d164b5df-1bc3-4c3f-893e-3e471fd16e64").is_ok());
        assert!(ImageId::parse("../x?y").is_err());
        assert!(ImageId::parse("d164b5df1bc34c3f893e3e471fd16e64").is_err());
    }

    #[test]
    fn member_ids() {
        assert!(MemberId::parse("ou-qdjrky7i07higfa4f6reqv9etybmp4ng").is_ok());
        assert!(MemberId::parse("..").is_err());
        assert!(MemberId::parse("a/b").is_err());
        assert!(MemberId::parse("").is_err());
    }
}
