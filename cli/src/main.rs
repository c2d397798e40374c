//! imgpipe: the command line of the imgpipe API. Submit a CSV, follow it with a progress bar,
//! download the output CSV and images, cancel or retry a request, verify a webhook delivery.
//! Every error is one line on stderr and an exit code (errors.rs, docs/cli.md).

mod answers;
mod args;
mod client;
mod commands;
mod config;
mod download;
mod errors;
mod requests;
mod submit;
mod summary;
mod verify;
mod wait;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in error.lines() {
                eprintln!("{line}");
            }
            error.exit_code()
        }
    }
}
