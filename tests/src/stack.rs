//! The local stack for tests: the emulator with template.yaml deployed and the function
//! binaries from `target/debug`, started once per test process on a free port and stopped
//! when the process ends (infra/local.py watches our pid). With `IMGPIPE_FUNCTIONS=release`
//! (the pipeline benchmark), or when a test asks for [`Functions::Release`] (tests/release_stack),
//! the functions are release builds from `target/release`. The sweeper's schedule is deployed
//! disabled: tests that need a sweep send its event themselves, and no scheduled one can race
//! them.
//!
//! The worker's test-only fault hook is armed on every test stack: an image whose bytes end
//! with [`CODEC_PANIC_MARKER`] makes its codec panic (infra/local.py --codec-panic-marker).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use imgpipe_core::adapters::aws::DynamoTable;
use imgpipe_core::domain::tenant::TenantId;
use imgpipe_core::use_cases::manage_keys::create_key;
use serde::Deserialize;

use crate::processes::function_pids;

/// Appended to an image, it makes the worker's codec panic on it (CODEC_PANIC_MARKER).
pub const CODEC_PANIC_MARKER: &str = "imgpipe test fault: panic in the codec";

/// Which build of the functions the stack runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Functions {
    /// `target/debug`: what `cargo test` builds anyway.
    #[default]
    Debug,
    /// `target/release`: the profile that ships (panic strategy, optimisation).
    Release,
}

impl Functions {
    /// `IMGPIPE_FUNCTIONS=release` asks for release builds; anything else is debug.
    pub fn from_env() -> Self {
        match std::env::var("IMGPIPE_FUNCTIONS") {
            Ok(profile) if profile == "release" => Self::Release,
            _ => Self::Debug,
        }
    }
}

/// Loopback ports the functions may reach (the fetcher and the webhook sender refuse every
/// other private address), handed to the test servers one by one.
const ALLOWED_PORTS: usize = 48;

/// The fan-out chunk size infra/local.py deploys (template parameter `FanOutChunkImages`).
pub const FAN_OUT_CHUNK_VARIABLE: &str = "IMGPIPE_FAN_OUT_CHUNK_IMAGES";

/// The tenant whose key `ApiClient::new` and `http_client` send.
pub const DEFAULT_TENANT: &str = "tests";

/// The stack's CloudFormation outputs (infra/local.py writes them to outputs.json).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalStack {
    pub endpoint: String,
    pub api_id: String,
    /// Host-based API address (`http://<api id>.execute-api.localhost:<port>`).
    pub api_url: String,
    pub bucket_name: String,
    pub table_name: String,
    pub jobs_queue_url: String,
    pub jobs_dead_letters_url: String,
    pub worker_function_name: String,
    pub notifier_function_name: String,
    /// The build of the functions it runs.
    #[serde(skip)]
    pub functions: Functions,
    /// The emulator's state directory; the functions' log lines are in its emulator.log.
    #[serde(skip)]
    pub state: PathBuf,
    #[serde(skip)]
    allowed_ports: Vec<u16>,
    #[serde(skip)]
    next_allowed: AtomicUsize,
    /// Where the function binaries, imgpipe-admin and the imgpipe CLI were built.
    #[serde(skip)]
    pub bin_dir: PathBuf,
    /// One API key per tenant the tests asked for (`key_for`).
    #[serde(skip)]
    keys: Mutex<HashMap<String, String>>,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

static STACK: OnceLock<LocalStack> = OnceLock::new();

impl LocalStack {
    /// The one stack of this test process, started on first use, with the functions
    /// `IMGPIPE_FUNCTIONS` names (debug by default) unless a test asked first for others.
    pub fn shared() -> &'static LocalStack {
        STACK.get_or_init(|| Self::start(Functions::from_env()))
    }

    /// The one stack of this test process, which must run `functions`: a test binary that
    /// needs release builds calls this before anything else starts the stack.
    pub fn shared_with(functions: Functions) -> &'static LocalStack {
        let stack = STACK.get_or_init(|| Self::start(functions));
        assert_eq!(stack.functions, functions, "this test process's stack was started with other functions");
        stack
    }

    fn start(functions: Functions) -> LocalStack {
        let root = workspace_root();
        let release = functions == Functions::Release;
        let bin_dir = target_dir(&root).join(if release { "release" } else { "debug" });
        build_functions(&root, release);
        let port = free_port();
        let allowed_ports = free_ports(ALLOWED_PORTS);
        let allow_hosts: Vec<String> = allowed_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let state = root.join(format!("target/test-stack/{}", std::process::id()));
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "the local stack's tools are missing: run `make setup` (make test does)");
        let status = Command::new(python)
            .arg(root.join("infra/local.py"))
            .arg("up")
            .args(["--port", &port.to_string()])
            .arg("--state")
            .arg(&state)
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--watch-pid", &std::process::id().to_string()])
            .args(["--allow-hosts", &allow_hosts.join(",")])
            .arg("--no-schedule")
            .args(["--codec-panic-marker", CODEC_PANIC_MARKER])
            // Fan-out chunks of 20 images, so that tests of a few dozen images cross several;
            // the benchmarks (tests/src/bin/load.rs) ask for the deployed 2000.
            .env(FAN_OUT_CHUNK_VARIABLE, std::env::var(FAN_OUT_CHUNK_VARIABLE).unwrap_or_else(|_| "20".into()))
            .status()
            .expect("run infra/local.py");
        assert!(status.success(), "the local stack did not start; see {}/emulator.log", state.display());
        let outputs = std::fs::read_to_string(state.join("outputs.json")).expect("outputs.json");
        let mut stack: LocalStack = serde_json::from_str(&outputs).expect("outputs.json has the stack outputs");
        stack.allowed_ports = allowed_ports;
        stack.state = state;
        stack.bin_dir = bin_dir;
        stack.functions = functions;
        // SDK clients in the tests read these, like the functions the emulator runs.
        // SAFETY: set once, before any test reads the environment through the SDK.
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", &stack.endpoint);
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        stack
    }

    /// Invokes a deployed function directly, as its event source would, and returns its answer.
    pub async fn invoke(&self, function_name: &str, event: &serde_json::Value) -> serde_json::Value {
        let url = format!("{}/2015-03-31/functions/{function_name}/invocations", self.endpoint);
        let response = reqwest::Client::new().post(url).json(event).send().await.expect("invoke reaches the emulator");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "invoking {function_name}: {status} {body}");
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
    }

    /// Kills every running process of a deployed function (the emulator runs each as a host
    /// process with AWS_LAMBDA_FUNCTION_NAME in its environment). Returns how many.
    pub fn kill_function_processes(&self, function_name: &str) -> usize {
        let killed = function_pids(function_name, &self.endpoint)
            .into_iter()
            .filter(|pid| Command::new("kill").args(["-KILL", pid]).status().is_ok_and(|s| s.success()));
        killed.count()
    }

    /// A listener on one of the ports the functions may reach (an image host or webhook
    /// receiver of a test). Each port is handed out once.
    pub fn allowed_listener(&self) -> TcpListener {
        loop {
            let next = self.next_allowed.fetch_add(1, Ordering::SeqCst);
            let port = *self.allowed_ports.get(next).expect("more test servers than ALLOWED_PORTS");
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return listener;
            }
        }
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        imgpipe_core::adapters::aws::sdk_config(std::time::Duration::from_secs(10)).await
    }

    /// An S3 client for the emulator: path-style, as `S3Blobs` addresses it.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config().await;
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build())
    }

    /// An API key (`ik_...`) of `tenant`, made on the stack's table with the core's `create_key`
    /// the first time a test asks for it, then the same one for the rest of the process.
    pub fn key_for(&self, tenant: &str) -> String {
        let mut keys = self.keys.lock().expect("no test panicked while making a key");
        if let Some(key) = keys.get(tenant) {
            return key.clone();
        }
        let tenant_id: TenantId = tenant.parse().expect("a valid tenant id");
        // Asked from sync code (`ApiClient::new`) that runs inside a test's runtime, which must
        // not be blocked on: the key is made on a thread with a runtime of its own.
        let key = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    runtime.block_on(async {
                        let table = self.table().await;
                        create_key(&table, tenant_id).await.expect("a key on the stack's table").0.reveal()
                    })
                })
                .join()
                .expect("the key was made")
        });
        keys.insert(tenant.to_string(), key.clone());
        key
    }

    /// The stack's table, through the core's adapter (key items only need no item lifetime).
    pub async fn table(&self) -> DynamoTable {
        DynamoTable::new(&self.sdk_config().await, &self.table_name, Duration::ZERO)
    }

    /// An HTTP client for the API (by its host-based address) that sends the default test
    /// tenant's key with every request. Only for the API: it would send the key anywhere.
    pub fn http_client(&self) -> reqwest::Client {
        self.http_client_with(Some(&format!("Bearer {}", self.key_for(DEFAULT_TENANT))))
    }

    /// An HTTP client that reaches the API by its host-based address, with this `Authorization`
    /// header on every request, or none.
    pub fn http_client_with(&self, authorization: Option<&str>) -> reqwest::Client {
        let host = self.api_url.trim_start_matches("http://");
        let (name, port) = host.rsplit_once(':').expect("api url has a port");
        let address = format!("127.0.0.1:{port}").parse().expect("socket address");
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = authorization {
            let value = reqwest::header::HeaderValue::from_str(value).expect("a header value");
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .resolve(name, address)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .no_proxy()
            .build()
            .expect("http client")
    }
}

fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Distinct free ports: all bound at once, so none is handed out twice, then released.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

/// Cargo's target directory: CARGO_TARGET_DIR when set (cargo builds there), else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// The end-to-end tests must run the code under test: build the four functions and
/// imgpipe-admin, and in debug the imgpipe CLI (a no-op when they are up to date) with the cargo
/// that runs the tests.
fn build_functions(root: &Path, release: bool) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "imgpipe-api", "-p", "imgpipe-worker", "-p", "imgpipe-notifier"])
        .args(["-p", "imgpipe-authorizer", "-p", "imgpipe-admin", "--bins"])
        // The benchmarks' release build (bench/run.sh) also names the tests package: the same
        // set of packages keeps cargo's feature unification, and so the build, the same.
        .args(if release { &["--release", "-p", "imgpipe-tests"][..] } else { &[] })
        // The CLI's end-to-end tests (local_stack/cli.rs) run the debug build only.
        .args(if release { &[][..] } else { &["-p", "imgpipe-cli"] })
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the function binaries failed");
}
