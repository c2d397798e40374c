//! Local HTTP servers that play the outside world: an image host (with the misbehaving URLs
//! real catalogues contain, and the hostile ones of `hostile_server`) and a webhook receiver
//! that records every POST.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use imgpipe_core::domain::webhook_signature::{DEFAULT_TOLERANCE_SECS, Delivery as Signed, Rejected, WebhookSecret};

use crate::hostile_server;
use crate::stack::LocalStack;

/// Serves fixtures under `/img/<name>`, the same after a delay under `/slow/<name>`,
/// HTML pretending to be an image under `/html/<name>`, never answers under `/hang/<name>`,
/// the hostile routes of [`hostile_server`], and 404 for anything else. Under `/held/<name>` it
/// serves the fixture once `release_held` is called (keeping a request in progress), and under
/// `/later/<name>` answers 404 until `publish_later` is called (an image not uploaded yet).
/// It logs the path of every request it gets (`requested`).
pub struct ImageServer {
    pub address: SocketAddr,
    requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
    published: Arc<AtomicBool>,
}

/// What an `ImageServer` serves: file name -> (bytes, Content-Type).
pub type Files = HashMap<String, (Vec<u8>, &'static str)>;

#[derive(Clone)]
struct Images {
    files: Arc<Files>,
    delay: Duration,
    released: Arc<tokio::sync::watch::Sender<bool>>,
    published: Arc<AtomicBool>,
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
        let files = Arc::new(files);
        let (released, published) = (Arc::new(tokio::sync::watch::Sender::new(false)), Arc::default());
        let state = Images {
            files: Arc::clone(&files),
            delay,
            released: Arc::clone(&released),
            published: Arc::clone(&published),
        };
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let paths = Arc::clone(&log);
        let app = Router::new()
            .route("/img/{name}", get(serve_image))
            .route("/slow/{name}", get(serve_slowly))
            .route("/held/{name}", get(serve_when_released))
            .route("/later/{name}", get(serve_once_published))
            .route("/hang/{name}", get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }))
            .route(
                "/html/{name}",
                get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], "<html><body>Sign in</body></html>") }),
            )
            .with_state(state)
            .merge(hostile_server::routes(files))
            .layer(axum::middleware::map_request(move |request: axum::extract::Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                paths.lock().unwrap().push(request.uri().path().to_string());
                std::future::ready(request)
            }));
        Self { address: serve(listener, app).await, requests, log, released, published }
    }

    /// The paths of the requests received so far, in order.
    pub fn requested(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The `/held/` images are served from now on, the waiting requests too.
    pub fn release_held(&self) {
        self.released.send_replace(true);
    }

    /// The `/later/` images are served from now on.
    pub fn publish_later(&self) {
        self.published.store(true, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.address, path.trim_start_matches('/'))
    }

    /// `/redirect` to `target`, URL-encoded into the query.
    pub fn redirect_url(&self, target: &str) -> String {
        let mut url = reqwest::Url::parse(&self.url("redirect")).expect("a valid URL");
        url.query_pairs_mut().append_pair("to", target);
        url.to_string()
    }

    /// HTTP requests this server has received so far, on any path.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve_image(State(images): State<Images>, Path(name): Path<String>) -> Response {
    match images.files.get(&name) {
        Some((bytes, content_type)) => ([(header::CONTENT_TYPE, *content_type)], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve_when_released(state: State<Images>, name: Path<String>) -> Response {
    let mut released = state.released.subscribe();
    released.wait_for(|released| *released).await.expect("the server holds its sender");
    serve_image(state, name).await
}

async fn serve_once_published(state: State<Images>, name: Path<String>) -> Response {
    if !state.published.load(Ordering::SeqCst) {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve_image(state, name).await
}

async fn serve_slowly(state: State<Images>, name: Path<String>) -> Response {
    tokio::time::sleep(state.delay).await;
    serve_image(state, name).await
}

/// One POST a `WebhookReceiver` got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    /// Whether it verifies with `secret` now, as a receiver checks it (Standard Webhooks, the
    /// same code as `imgpipe verify-webhook`).
    pub fn verify(&self, secret: &WebhookSecret) -> Result<(), Rejected> {
        let header = |name: &str| self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("");
        let signed = Signed {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: &self.body,
        };
        secret.verify(&signed, chrono::Utc::now().timestamp(), DEFAULT_TOLERANCE_SECS)
    }
}

/// Every POST received: the `<token>` of its path, and what came.
type WebhookLog = Arc<Mutex<Vec<(String, Delivery)>>>;

/// Records every POST to `/hook/<token>` and answers 204; while `set_down(true)`, answers 503
/// and records nothing (it only counts the refused POSTs); while `set_stalled(true)`, keeps the
/// POST waiting for an answer that never comes, and records it apart (`stalled`).
pub struct WebhookReceiver {
    pub address: SocketAddr,
    received: WebhookLog,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    stalls: Arc<AtomicBool>,
    stalled: WebhookLog,
}

#[derive(Clone)]
struct ReceiverState {
    log: WebhookLog,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    stalls: Arc<AtomicBool>,
    stalled: WebhookLog,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let state = ReceiverState {
            log: Arc::default(),
            down: Arc::default(),
            refused: Arc::default(),
            stalls: Arc::default(),
            stalled: Arc::default(),
        };
        let app =
            Router::new()
                .route(
                    "/hook/{token}",
                    post(
                        |State(state): State<ReceiverState>,
                         Path(token): Path<String>,
                         headers: HeaderMap,
                         body: Bytes| async move {
                            if state.down.load(Ordering::SeqCst) {
                                state.refused.fetch_add(1, Ordering::SeqCst);
                                return StatusCode::SERVICE_UNAVAILABLE;
                            }
                            if state.stalls.load(Ordering::SeqCst) {
                                state.stalled.lock().unwrap().push((token, Delivery { headers, body }));
                                return std::future::pending().await;
                            }
                            state.log.lock().unwrap().push((token, Delivery { headers, body }));
                            StatusCode::NO_CONTENT
                        },
                    ),
                )
                .with_state(state.clone());
        let address = serve(LocalStack::shared().allowed_listener(), app).await;
        let ReceiverState { log, down, refused, stalls, stalled } = state;
        Self { address, received: log, down, refused, stalls, stalled }
    }

    pub fn set_stalled(&self, stalls: bool) {
        self.stalls.store(stalls, Ordering::SeqCst);
    }

    /// The POSTs to `/hook/<token>` held unanswered while stalled.
    pub fn stalled(&self, token: &str) -> Vec<Delivery> {
        let log = self.stalled.lock().unwrap();
        log.iter().filter(|(t, _)| t == token).map(|(_, delivery)| delivery.clone()).collect()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// POSTs answered 503 while down.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn url(&self, token: &str) -> String {
        format!("http://{}/hook/{token}", self.address)
    }

    /// The POSTs to `/hook/<token>` so far.
    pub fn deliveries(&self, token: &str) -> Vec<Delivery> {
        let log = self.received.lock().unwrap();
        log.iter().filter(|(t, _)| t == token).map(|(_, delivery)| delivery.clone()).collect()
    }

    /// The bodies POSTed to `/hook/<token>` so far.
    pub fn received(&self, token: &str) -> Vec<Bytes> {
        self.deliveries(token).into_iter().map(|delivery| delivery.body).collect()
    }
}

async fn serve(listener: std::net::TcpListener, app: Router) -> SocketAddr {
    listener.set_nonblocking(true).expect("non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    address
}
