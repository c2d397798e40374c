//! imgpipe's domain: the CSV rules, the request and image state machine, the codec, the
//! ports (one trait per capability) with their AWS adapters and in-memory fakes, and the use
//! cases the three functions run.

pub mod accept;
pub mod aws;
pub mod codec;
pub mod config;
pub mod csv_rules;
pub mod dropped_csv;
pub mod errors;
pub mod fan_out;
pub mod fetch;
pub mod finish_request;
pub mod http_url;
pub mod image_list;
pub mod logging;
pub mod memory;
pub mod ports;
pub mod process_image;
pub mod request;
pub mod request_id;
pub mod sweep;
pub mod webhook;
pub mod webhook_outbox;
pub mod webhook_signature;
