//! The `imgpipe` CLI as a user runs it: the binary built with the functions (stack.rs), in a
//! directory of its own, configured through the environment for one tenant of the test stack.
//! `IMGPIPE_CONFIG` points into that directory, so no test reads or writes the user's config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::stack::LocalStack;

/// What one run of the CLI did.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The CLI for one test: its working directory and its environment.
pub struct Cli {
    pub dir: PathBuf,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    /// For `tenant` of `stack`, in a fresh directory named after the test.
    pub fn new(stack: &LocalStack, tenant: &str, test: &str) -> Self {
        let dir = stack.state.join("cli").join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the test's directory");
        let env = vec![
            ("IMGPIPE_API_URL".to_string(), stack.api_url.clone()),
            ("IMGPIPE_API_KEY".to_string(), stack.key_for(tenant)),
            ("IMGPIPE_CONFIG".to_string(), dir.join("config.toml").display().to_string()),
        ];
        Self { dir, binary: stack.bin_dir.join("imgpipe"), env }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The environment the CLI runs with, for commands that start it themselves (`script`).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir).stdin(Stdio::null());
        // Tests never leave loopback: no proxy the environment may name.
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            command.env_remove(proxy);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Runs `imgpipe <args>` to its end, off the async runtime.
    pub async fn run(&self, args: &[&str]) -> CliRun {
        let mut command = self.command(&self.binary);
        command.args(args);
        run(command).await
    }

    /// Runs `command` to its end, off the async runtime.
    pub async fn run_command(&self, command: Command) -> CliRun {
        run(command).await
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

async fn run(mut command: Command) -> CliRun {
    let output: Output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the CLI's thread")
        .expect("the CLI starts (built with the functions)");
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
