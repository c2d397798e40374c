//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::submit::DEFAULT_INLINE_LIMIT;

#[derive(Parser)]
#[command(
    name = "imgpipe",
    version,
    about = "Submit CSVs of image URLs to imgpipe, follow them, download the results",
    after_help = "Configuration: flags, then IMGPIPE_API_URL / IMGPIPE_API_KEY, then the profile of the config \
                  file (IMGPIPE_CONFIG, or imgpipe/config.toml in your config directory).\n\
                  Exit codes: 0 ok, 2 usage, 3 auth, 4 not found, 5 request failed or refused, 6 network or service."
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone, Default)]
pub struct Connection {
    /// The API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com
    #[arg(long, global = true, value_name = "URL")]
    pub api_url: Option<String>,
    /// The API key (ik_...). Prefer IMGPIPE_API_KEY or a profile: flags show in `ps`.
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// The config file's profile to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upload a CSV (inline, or the large-CSV way above the inline limit) and print the request id.
    Submit {
        file: PathBuf,
        /// Where to POST the signed webhook when the request is final.
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
        /// Makes a retried submit return the first one's request instead of a second request.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Follow the request to its final state, print the summary and save the output CSV.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        output: OutputCsv,
        /// CSVs larger than this many bytes go the large-CSV way (POST /api/uploads).
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_INLINE_LIMIT)]
        inline_limit: u64,
    },
    /// Follow a request to its final state: progress, then the summary; saves the output CSV.
    Wait {
        id: String,
        #[command(flatten)]
        output: OutputCsv,
    },
    /// A request's status.
    Status {
        id: String,
        /// The API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Your requests, newest first.
    List {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// The cursor printed after the previous page.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// The API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// A request's failed images: row, error code, URL and message.
    Failures { id: String },
    /// The output CSV and, with --images, every output image.
    Download {
        id: String,
        /// Where to write the output CSV [default: <request id>.output.csv]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also fetch every output image into DIR, named row<row>-<position>.jpg.
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Cancel a request that is not final: images without a result end `cancelled`.
    Cancel { id: String },
    /// A new request with the same rows in which only the failed images are processed again.
    Retry {
        id: String,
        /// Follow the new request to its final state.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        output: OutputCsv,
    },
    /// Check a webhook delivery's signature: prints `valid`, or `invalid: <why>` (exit code 5).
    VerifyWebhook {
        /// The request's webhook_secret (whsec_...), from the submit's answer.
        #[arg(long, env = "IMGPIPE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The delivery as a raw HTTP request (head, blank line, body); `-` reads stdin.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["headers", "body"], required_unless_present = "headers")]
        request: Option<PathBuf>,
        /// The delivery's headers, `Name: value` per line; `-` reads stdin.
        #[arg(long, value_name = "FILE", requires = "body")]
        headers: Option<PathBuf>,
        /// The delivery's body, the bytes as received; `-` reads stdin.
        #[arg(long, value_name = "FILE", requires = "headers")]
        body: Option<PathBuf>,
        /// How far the timestamp may be from this machine's clock.
        #[arg(long, value_name = "SECONDS", default_value_t = imgpipe_signature::DEFAULT_TOLERANCE_SECS)]
        tolerance: i64,
    },
    /// Save --api-url and --api-key as a profile of the config file.
    Configure {
        /// Make this profile the one used when none is named (the first one saved always is).
        #[arg(long)]
        default: bool,
    },
}

#[derive(Args, Clone)]
pub struct OutputCsv {
    /// Where to save the output CSV once the request is final [default: <request id>.output.csv]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not save the output CSV.
    #[arg(long, conflicts_with = "output")]
    pub no_output: bool,
}
