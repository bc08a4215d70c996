//! A fake of the ECS metadata service's security-key API: every fetch mints new
//! temporary credentials that the fake IMS accepts until they expire.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::json;

use super::FakeState;

#[derive(Clone)]
struct Shared {
    ims: FakeState,
    lifetime: Duration,
    session_token: String,
    fetches: Arc<AtomicU64>,
}

/// A running fake metadata service on 127.0.0.1; stopped when dropped.
pub struct FakeMetadata {
    addr: SocketAddr,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeMetadata {
    /// Serves credentials valid for `lifetime`, registered with `ims`.
    pub async fn start(ims: FakeState, lifetime: Duration) -> std::io::Result<FakeMetadata> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fetches = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            ims,
            lifetime,
            session_token: format!("{:032x}", rand::random::<u128>()),
            fetches: fetches.clone(),
        };
        let app = Router::new()
            .route("/meta-data/latest/api/token", put(session_token))
            .route("/openstack/latest/securitykey", get(security_key))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeMetadata {
            addr,
            fetches,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Credentials minted so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session_token(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if headers.get("x-metadata-token-ttl-seconds").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "X-Metadata-Token-Ttl-Seconds is required",
        )
            .into_response();
    }
    s.session_token.clone().into_response()
}

async fn security_key(State(s): State<Shared>, headers: HeaderMap) -> Response {
    // Like the hardened service: the session token is required.
    if headers
        .get("x-metadata-token")
        .and_then(|v| v.to_str().ok())
        != Some(s.session_token.as_str())
    {
        return (StatusCode::UNAUTHORIZED, "metadata token missing or wrong").into_response();
    }
    let n = s.fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let (ak, sk, token) = (
        format!("TMPAK{n:04}"),
        format!("tmp-sk-{:016x}", rand::random::<u64>()),
        format!("tmp-token-{:016x}", rand::random::<u64>()),
    );
    let expires = SystemTime::now() + s.lifetime;
    s.ims.add_temporary_account(&ak, &sk, &token, expires);
    let expires_at = time::OffsetDateTime::from(expires)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default();
    let body = json!({"credential": {"access": ak, "secret": sk, "securitytoken": token, "expires_at": expires_at}});
    ([("content-type", "application/json")], body.to_string()).into_response()
}
