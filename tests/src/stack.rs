//! The local stack for tests: the emulator with template.yaml deployed and the function
//! binaries from `target/debug`, started once per test process on a free port and stopped
//! when the process ends (infra/local.py watches our pid).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;

/// The stack's CloudFormation outputs (infra/local.py writes them to outputs.json).
#[derive(Debug, Clone, Deserialize)]
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
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

impl LocalStack {
    /// The one stack of this test process, started on first use.
    pub fn shared() -> &'static LocalStack {
        static STACK: OnceLock<LocalStack> = OnceLock::new();
        STACK.get_or_init(Self::start)
    }

    fn start() -> LocalStack {
        let root = workspace_root();
        let bin_dir = root.join("target/debug");
        build_functions(&root);
        let port = free_port();
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
            .status()
            .expect("run infra/local.py");
        assert!(status.success(), "the local stack did not start; see {}/emulator.log", state.display());
        let outputs = std::fs::read_to_string(state.join("outputs.json")).expect("outputs.json");
        let stack: LocalStack = serde_json::from_str(&outputs).expect("outputs.json has the stack outputs");
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
        let wanted = format!("AWS_LAMBDA_FUNCTION_NAME={function_name}");
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            if environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()) {
                let pid = entry.file_name().to_string_lossy().to_string();
                if Command::new("kill").args(["-KILL", &pid]).status().is_ok_and(|s| s.success()) {
                    killed += 1;
                }
            }
        }
        killed
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        imgpipe_core::aws::sdk_config().await
    }

    /// An HTTP client that reaches the API by its host-based address.
    pub fn http_client(&self) -> reqwest::Client {
        let host = self.api_url.trim_start_matches("http://");
        let (name, port) = host.rsplit_once(':').expect("api url has a port");
        let address = format!("127.0.0.1:{port}").parse().expect("socket address");
        reqwest::Client::builder()
            .resolve(name, address)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("http client")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The end-to-end tests must run the code under test: build the three functions (a no-op
/// when they are up to date) with the cargo that runs the tests.
fn build_functions(root: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "imgpipe-api", "-p", "imgpipe-worker", "-p", "imgpipe-notifier", "--bins"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the function binaries failed");
}
