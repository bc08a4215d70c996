//! `basic_auth_users`: bcrypt hashes checked off the async workers, with a cache of
//! verified credentials (digests only) so frequent scrapes do not pay bcrypt each time.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::Ctx;
use crate::files::ConfigError;

/// Successful basic-auth verifications remembered; beyond this the cache starts over.
const AUTH_CACHE_ENTRIES: usize = 1024;

/// The `basic_auth_users` of one web config version, with a cache of successful
/// verifications so that frequent scrapes do not pay for bcrypt every time.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Verified (and the result ignored) for unknown users, so that an unknown user
    /// costs as much as a wrong password: the costliest configured hash.
    dummy: String,
    /// SHA-256 of user and password of verified credentials (never the password).
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    pub(super) fn new(
        users: BTreeMap<String, String>,
        ctx: &Ctx,
    ) -> Result<BasicAuth, ConfigError> {
        let mut dummy: Option<(u32, &String)> = None;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(ctx.invalid(&key, "a user name cannot contain ':'"));
            }
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| ctx.invalid(&key, format!("not a bcrypt hash: {e}")))?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                return Err(ctx.invalid(&key, format!("bcrypt cost {cost} is outside 4..=31")));
            }
            if dummy.is_none_or(|(c, _)| cost > c) {
                dummy = Some((cost, hash));
            }
        }
        let dummy = dummy.map(|(_, h)| h.clone()).unwrap_or_default();
        Ok(BasicAuth {
            users,
            dummy,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    /// Wrong users and wrong passwords take the same path: one bcrypt verification.
    pub async fn authorize(self: &Arc<Self>, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let digest = cache_key(&user, &password);
        if self.cache().contains(&digest) {
            return true;
        }
        let this = self.clone();
        // bcrypt is deliberately slow CPU work; keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || this.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= AUTH_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(digest);
        }
        ok
    }

    fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let hash = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u));
        match hash {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set holds no invariant a panicking holder could break.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn cache_key(user: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_be_bytes());
    h.update(user);
    h.update(password);
    h.finalize().into()
}

/// User and password of a `Basic` `Authorization` header (split at the first ':').
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = header.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn basic_auth_checks_user_and_password() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let ctx = Ctx {
            file: "f",
            dir: Path::new("."),
        };
        let auth =
            Arc::new(BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)]), &ctx).unwrap());
        let header = |u: &str, p: &str| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {token}")).unwrap()
        };
        assert!(!auth.authorize(None).await);
        assert!(!auth.authorize(Some(&header("alice", "wrong"))).await);
        assert!(!auth.authorize(Some(&header("bob", "right"))).await);
        assert!(auth.authorize(Some(&header("alice", "right"))).await);
        // Now from the cache, which holds digests only.
        assert!(auth.authorize(Some(&header("alice", "right"))).await);
        assert_eq!(auth.cache().len(), 1);
        assert!(!auth.authorize(Some(&header("alice", "right2"))).await);
        assert!(
            !auth
                .authorize(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
    }
}
