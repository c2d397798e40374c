//! What the service is about, and every rule about it: requests and images and the states they
//! move through, CSV rules and limits, URLs and the addresses they may reach, failures and what
//! each means, webhook signatures, and the codec. Pure: nothing here does I/O or awaits.

pub mod address_policy;
pub mod api_key;
pub mod codec;
pub mod csv_rules;
pub mod delivery;
pub mod dropped_csv;
pub mod errors;
pub mod fan_out_chunks;
pub mod fetch_jobs;
pub mod http_url;
pub mod idempotency;
pub mod locations;
pub mod quota;
pub mod request;
pub mod request_id;
pub mod tenant;
pub mod upload_reservation;
pub mod webhook;
pub mod webhook_signature;
pub mod worker_memory;
