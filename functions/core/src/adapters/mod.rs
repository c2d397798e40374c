//! The ports' implementations: AWS (`aws`), HTTP to URLs chosen by strangers (`http_fetch` for
//! images, `http_webhook` for webhooks), and the in-memory fakes unit tests use (`memory`).

pub mod aws;
pub mod http_fetch;
pub mod http_webhook;
pub mod memory;
