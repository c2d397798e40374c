//! imgpipe's core, one folder per role; the three functions only translate their events into
//! calls of `use_cases` and the results into answers.
//!
//! - `domain`: what a request, an image, a CSV, a URL and a failure are, and the rules they obey.
//!   Pure: no I/O, no async.
//! - `use_cases`: one module per thing the service does (accept an upload, fan out, process an
//!   image, finish a request, sweep, ...), each taking only the ports it needs.
//! - `ports`: one small trait per capability the use cases need (store a blob, record a result).
//! - `adapters`: the ports' implementations: AWS (S3, SQS, DynamoDB), the guarded HTTP fetcher
//!   and webhook sender, and in-memory fakes for unit tests that keep the same contracts.
//! - `config` and `logging`: what each function reads at start-up, and how it logs.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod logging;
pub mod ports;
pub mod use_cases;

#[cfg(test)]
mod test_support;
