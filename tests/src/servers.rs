//! Local HTTP servers that play the outside world: an image host (with the misbehaving URLs
//! real catalogues contain) and a webhook receiver that records every POST.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::stack::LocalStack;

/// Serves fixtures under `/img/<name>`, the same after a delay under `/slow/<name>`,
/// HTML pretending to be an image under `/html/<name>`, never answers under `/hang/<name>`,
/// and 404 for anything else.
pub struct ImageServer {
    pub address: SocketAddr,
}

/// What an `ImageServer` serves: file name -> (bytes, Content-Type).
pub type Files = HashMap<String, (Vec<u8>, &'static str)>;

#[derive(Clone)]
struct Images {
    files: Arc<Files>,
    delay: Duration,
}

impl ImageServer {
    /// On a port the local stack's functions may fetch from. `/slow/` answers after `delay`.
    pub async fn start(files: Files, delay: Duration) -> Self {
        Self::start_on(LocalStack::shared().allowed_listener(), files, delay).await
    }

    /// On a port outside the allowlist: what any other loopback service looks like to the
    /// worker, which must refuse it.
    pub async fn start_unlisted(files: Files, delay: Duration) -> Self {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"), files, delay).await
    }

    async fn start_on(listener: std::net::TcpListener, files: Files, delay: Duration) -> Self {
        let state = Images { files: Arc::new(files), delay };
        let app = Router::new()
            .route("/img/{name}", get(serve_image))
            .route("/slow/{name}", get(serve_slowly))
            .route("/hang/{name}", get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }))
            .route(
                "/html/{name}",
                get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], "<html><body>Sign in</body></html>") }),
            )
            .with_state(state);
        Self { address: serve(listener, app).await }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.address, path.trim_start_matches('/'))
    }
}

async fn serve_image(State(images): State<Images>, Path(name): Path<String>) -> Response {
    match images.files.get(&name) {
        Some((bytes, content_type)) => ([(header::CONTENT_TYPE, *content_type)], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve_slowly(state: State<Images>, name: Path<String>) -> Response {
    tokio::time::sleep(state.delay).await;
    serve_image(state, name).await
}

/// Every POST received: the `<token>` of its path and its body.
type WebhookLog = Arc<Mutex<Vec<(String, Bytes)>>>;

/// Records every POST to `/hook/<token>` and answers 204.
pub struct WebhookReceiver {
    pub address: SocketAddr,
    received: WebhookLog,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let received: WebhookLog = Arc::default();
        let app = Router::new()
            .route(
                "/hook/{token}",
                post(|State(log): State<WebhookLog>, Path(token): Path<String>, body: Bytes| async move {
                    log.lock().unwrap().push((token, body));
                    StatusCode::NO_CONTENT
                }),
            )
            .with_state(received.clone());
        Self { address: serve(LocalStack::shared().allowed_listener(), app).await, received }
    }

    pub fn url(&self, token: &str) -> String {
        format!("http://{}/hook/{token}", self.address)
    }

    /// The bodies POSTed to `/hook/<token>` so far.
    pub fn received(&self, token: &str) -> Vec<Bytes> {
        let log = self.received.lock().unwrap();
        log.iter().filter(|(t, _)| t == token).map(|(_, body)| body.clone()).collect()
    }
}

async fn serve(listener: std::net::TcpListener, app: Router) -> SocketAddr {
    listener.set_nonblocking(true).expect("non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    address
}
