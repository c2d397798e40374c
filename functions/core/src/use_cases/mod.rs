//! One module per thing the service does. Each takes the ports it needs (a struct of trait
//! objects) and holds the order of the steps and what to do when one fails; the rules it applies
//! live in `domain`.

pub mod accept_dropped_csv;
pub mod accept_upload;
pub mod authorize;
pub mod cancel_request;
pub mod deliver_webhook;
pub mod fail_request;
pub mod fan_out;
pub mod finish_request;
pub mod handle_queue_message;
pub mod links;
pub mod list_images;
pub mod manage_keys;
pub mod process_image;
pub mod record_results;
pub mod reserve_upload;
pub mod retry_request;
pub mod stored_csv;
pub mod sweep;
