//! Every setting of every function, read once at start-up from the environment. docs/configuration.md's
//! configuration table lists the same names and defaults; template.yaml sets them.

use std::str::FromStr;
use std::time::Duration;

use crate::adapters::http_fetch::FetchLimits;
use crate::domain::address_policy::ExemptHosts;
use crate::domain::codec::{CodecLimits, PanicMarker};
use crate::domain::csv_rules::{CsvLimits, MAX_URL_LENGTH_CEILING};
use crate::domain::delivery::{RetryPolicy, TimeReserves};
use crate::domain::fan_out_chunks::DEFAULT_CHUNK_IMAGES;
use crate::domain::locations::Links;
use crate::domain::quota::{DEFAULT_MAX_OPEN_IMAGES, TenantQuota};
use crate::domain::worker_memory::{WorkerMemory, kept_free_bytes};

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    name: &'static str,
    problem: String,
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError { name, problem: "is required".into() }),
    }
}

fn or_default<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|_| ConfigError { name, problem: format!("cannot parse {value:?}") })
        }
        _ => Ok(default),
    }
}

fn seconds(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    or_default(name, default).map(Duration::from_secs)
}

/// Exact `host:port` pairs exempt from the public-address rule: only for the local stack
/// and tests (a sample-image server on 127.0.0.1); never set in a deployment.
fn exempt_hosts(name: &'static str) -> Result<ExemptHosts, ConfigError> {
    ExemptHosts::parse(&std::env::var(name).unwrap_or_default()).map_err(|problem| ConfigError { name, problem })
}

/// The longest one AWS SDK call may take, retries included (`adapters::aws::sdk_config`).
pub fn sdk_operation_timeout() -> Result<Duration, ConfigError> {
    seconds("SDK_OPERATION_TIMEOUT_SECS", 10)
}

/// Uploads and dropped CSVs count against the same quota: room for two of the largest requests
/// the bucket takes.
fn quota() -> Result<TenantQuota, ConfigError> {
    Ok(TenantQuota { max_open_images: or_default("MAX_OPEN_IMAGES_PER_TENANT", DEFAULT_MAX_OPEN_IMAGES)? })
}

fn item_lifetime() -> Result<Duration, ConfigError> {
    or_default("ITEM_TTL_DAYS", 30u64).map(|days| Duration::from_secs(days * 24 * 3600))
}

fn max_url_length() -> Result<usize, ConfigError> {
    let max_url_length = or_default("MAX_URL_LENGTH", CsvLimits::default().max_url_length)?;
    if max_url_length > MAX_URL_LENGTH_CEILING {
        let problem = format!("{max_url_length} is over {MAX_URL_LENGTH_CEILING}, the most that keeps items writable");
        return Err(ConfigError { name: "MAX_URL_LENGTH", problem });
    }
    Ok(max_url_length)
}

/// CSVs uploaded through the API (the body of `POST /api/upload/`).
fn csv_limits() -> Result<CsvLimits, ConfigError> {
    let defaults = CsvLimits::default();
    Ok(CsvLimits {
        max_bytes: or_default("MAX_CSV_BYTES", defaults.max_bytes)?,
        max_rows: or_default("MAX_CSV_ROWS", defaults.max_rows)?,
        max_images: or_default("MAX_CSV_IMAGES", defaults.max_images)?,
        max_url_length: max_url_length()?,
    })
}

/// CSVs that arrive through the bucket: PUT to a reserved upload's URL, or dropped under
/// `incoming/`. The same rules with larger limits: no API Gateway or Lambda payload in the way.
fn bucket_csv_limits() -> Result<CsvLimits, ConfigError> {
    let defaults = CsvLimits::bucket();
    Ok(CsvLimits {
        max_bytes: or_default("MAX_BUCKET_CSV_BYTES", defaults.max_bytes)?,
        max_rows: or_default("MAX_BUCKET_CSV_ROWS", defaults.max_rows)?,
        max_images: or_default("MAX_BUCKET_CSV_IMAGES", defaults.max_images)?,
        max_url_length: max_url_length()?,
    })
}

#[derive(Debug)]
pub struct ApiConfig {
    pub bucket: String,
    pub table: String,
    pub queue_url: String,
    pub csv_limits: CsvLimits,
    /// Of CSVs PUT to a reserved upload's URL: its `max_bytes` is told to the caller.
    pub bucket_csv_limits: CsvLimits,
    pub item_lifetime: Duration,
    /// How long the redirect target of the output CSV link stays valid.
    pub url_lifetime: Duration,
    /// How long a reserved upload's presigned PUT works.
    pub upload_url_lifetime: Duration,
    pub quota: TenantQuota,
    /// The Secrets Manager secret each request's webhook secret is derived from.
    pub webhook_signing_secret_id: String,
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            bucket: required("BUCKET_NAME")?,
            table: required("TABLE_NAME")?,
            queue_url: required("QUEUE_URL")?,
            csv_limits: csv_limits()?,
            bucket_csv_limits: bucket_csv_limits()?,
            item_lifetime: item_lifetime()?,
            url_lifetime: seconds("DOWNLOAD_URL_TTL_SECS", 900)?,
            upload_url_lifetime: seconds("UPLOAD_URL_TTL_SECS", 3600)?,
            quota: quota()?,
            webhook_signing_secret_id: required("WEBHOOK_SIGNING_SECRET_ID")?,
        })
    }
}

#[derive(Debug)]
pub struct WorkerConfig {
    pub bucket: String,
    pub table: String,
    pub fetch: FetchLimits,
    /// Image hosts fetched from although not public (FETCH_ALLOW_HOSTS): local stack and tests only.
    pub fetch_exempt_hosts: ExemptHosts,
    /// Its memory limit comes from the function's memory (`domain::worker_memory`).
    pub codec: CodecLimits,
    /// CODEC_PANIC_MARKER: the test-only fault hook of the codec; unset in every deployment.
    pub codec_panic_marker: PanicMarker,
    /// What a job must have left before each of its steps (`domain::delivery::TimeReserves`).
    pub time_reserves: TimeReserves,
    /// The queue's `maxReceiveCount` (MAX_RECEIVES) and the waits between attempts.
    pub retry: RetryPolicy,
    /// Images of one batch processed at once (their fetches and uploads overlap).
    pub concurrency: usize,
    /// Of those, images decoded and encoded at once (see `use_cases::process_image::CodecPool`).
    pub codec_slots: usize,
    /// The jobs queue, whose messages are delayed for their next attempt after a transient failure.
    pub queue_url: String,
    /// Messages from this queue (the jobs' dead-letter queue) are recorded as failed images.
    pub dead_letters_arn: Option<String>,
    pub item_lifetime: Duration,
    /// For CSVs that arrive through the bucket under `incoming/` (reserved uploads included).
    pub csv_limits: CsvLimits,
    pub quota: TenantQuota,
    /// Images whose jobs one invocation queues (`domain::fan_out_chunks`).
    pub chunk_images: u32,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let fetch = FetchLimits::default();
        let codec = CodecLimits::default();
        let max_image_bytes = or_default("MAX_IMAGE_BYTES", fetch.max_bytes)?;
        let defaults = WorkerMemory::default();
        let concurrency = or_default("WORKER_CONCURRENCY", defaults.concurrency)?;
        let codec_slots = or_default("CODEC_SLOTS", defaults.codec_slots)?;
        // Lambda sets it from MemorySize.
        let memory_name = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
        let memory = WorkerMemory {
            function_mb: or_default(memory_name, defaults.function_mb)?,
            concurrency,
            max_image_bytes,
            codec_slots,
            // glibc reads it when the process starts (template.yaml sets it for the worker).
            kept_free_bytes: kept_free_bytes(&std::env::var("GLIBC_TUNABLES").unwrap_or_default()),
        };
        let max_alloc_bytes =
            memory.decode_limit().map_err(|error| ConfigError { name: memory_name, problem: error.to_string() })?;
        Ok(Self {
            bucket: required("BUCKET_NAME")?,
            table: required("TABLE_NAME")?,
            fetch: FetchLimits {
                connect_timeout: seconds("FETCH_CONNECT_TIMEOUT_SECS", fetch.connect_timeout.as_secs())?,
                total_timeout: seconds("FETCH_TIMEOUT_SECS", fetch.total_timeout.as_secs())?,
                max_bytes: max_image_bytes,
                max_redirects: fetch.max_redirects,
            },
            fetch_exempt_hosts: exempt_hosts("FETCH_ALLOW_HOSTS")?,
            codec: CodecLimits { max_pixels: or_default("MAX_IMAGE_PIXELS", codec.max_pixels)?, max_alloc_bytes },
            codec_panic_marker: PanicMarker::new(&std::env::var("CODEC_PANIC_MARKER").unwrap_or_default()),
            time_reserves: TimeReserves {
                fetch: seconds("FETCH_TIMEOUT_SECS", fetch.total_timeout.as_secs())?,
                codec: seconds("CODEC_RESERVE_SECS", 15)?,
                store: 2 * sdk_operation_timeout()?,
            },
            retry: RetryPolicy {
                max_receives: or_default("MAX_RECEIVES", 5)?,
                base: seconds("RETRY_BASE_SECS", 10)?,
                cap: seconds("RETRY_CAP_SECS", 120)?,
            },
            concurrency,
            codec_slots,
            queue_url: required("QUEUE_URL")?,
            dead_letters_arn: std::env::var("DEAD_LETTERS_QUEUE_ARN").ok().filter(|arn| !arn.is_empty()),
            item_lifetime: item_lifetime()?,
            csv_limits: bucket_csv_limits()?,
            quota: quota()?,
            chunk_images: or_default("FAN_OUT_CHUNK_IMAGES", DEFAULT_CHUNK_IMAGES)?,
        })
    }
}

#[derive(Debug)]
pub struct NotifierConfig {
    pub bucket: String,
    pub table: String,
    /// Links through the API when PUBLIC_API_URL is set, else presigned S3 URLs valid for
    /// OUTPUT_URL_TTL_SECS (SigV4 allows 7 days at most).
    pub links: Links,
    pub webhook_timeout: Duration,
    pub webhook_tries_per_delivery: u32,
    /// Wait before a failed webhook is delivered again, doubling each time (`domain::webhook`).
    pub webhook_redelivery_base: Duration,
    /// Like FETCH_ALLOW_HOSTS, for webhook receivers: local stack and tests only.
    pub webhook_exempt_hosts: ExemptHosts,
    pub item_lifetime: Duration,
    /// The jobs queue, whose backlog keeps the sweeper from timing out images still in it.
    pub queue_url: String,
    /// Left of the Lambda's time when a sweep stops starting work, for what is in flight.
    pub sweep_reserve: Duration,
    /// The Secrets Manager secret each request's webhook secret is derived from.
    pub webhook_signing_secret_id: String,
}

impl NotifierConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            bucket: required("BUCKET_NAME")?,
            table: required("TABLE_NAME")?,
            links: match std::env::var("PUBLIC_API_URL") {
                Ok(base_url) if !base_url.trim().is_empty() => Links::Api { base_url: base_url.trim().into() },
                _ => Links::Presigned { lifetime: seconds("OUTPUT_URL_TTL_SECS", 7 * 24 * 3600)? },
            },
            webhook_timeout: seconds("WEBHOOK_TIMEOUT_SECS", 10)?,
            webhook_tries_per_delivery: or_default("WEBHOOK_ATTEMPTS", 3)?,
            webhook_redelivery_base: seconds("WEBHOOK_REDELIVERY_BASE_SECS", 60)?,
            webhook_exempt_hosts: exempt_hosts("WEBHOOK_ALLOW_HOSTS")?,
            item_lifetime: item_lifetime()?,
            queue_url: required("QUEUE_URL")?,
            sweep_reserve: seconds("SWEEP_RESERVE_SECS", 40)?,
            webhook_signing_secret_id: required("WEBHOOK_SIGNING_SECRET_ID")?,
        })
    }
}

#[derive(Debug)]
pub struct AuthorizerConfig {
    /// The table whose key items (`KEY#<key id>`) the authorizer reads.
    pub table: String,
    /// Unused by the key items (they never expire), but `DynamoTable` carries it.
    pub item_lifetime: Duration,
}

impl AuthorizerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { table: required("TABLE_NAME")?, item_lifetime: item_lifetime()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CodecLimits::default()`, which the tests and benchmarks use, is the decode limit of the
    /// worker's default settings.
    #[test]
    fn the_default_memory_settings_are_the_workers() {
        let defaults = WorkerMemory::default();
        assert_eq!(defaults.max_image_bytes, FetchLimits::default().max_bytes);
        assert_eq!(Ok(CodecLimits::default().max_alloc_bytes), defaults.decode_limit());
    }

    /// `WorkerMemory::default()` counts the memory glibc keeps as the template's worker sets it.
    #[test]
    fn the_default_kept_free_memory_is_the_templates() {
        let template = include_str!("../../../template.yaml");
        let tunables = template
            .lines()
            .find_map(|line| line.trim().strip_prefix("GLIBC_TUNABLES:"))
            .expect("the worker's GLIBC_TUNABLES in template.yaml");
        let tunables = tunables.trim().trim_matches('"');
        assert_eq!(kept_free_bytes(tunables), WorkerMemory::default().kept_free_bytes);
    }
}
