//! What the integration and end-to-end tests share: the local stack they run on, the local
//! HTTP servers that play image hosts and webhook receivers, and real image fixtures.

pub mod api_client;
pub mod cli;
pub mod fixtures;
pub mod hostile_server;
pub mod openapi;
pub mod processes;
pub mod requests;
pub mod servers;
pub mod stack;
pub mod tables;
pub mod waits;
pub mod worker_batch;

/// A multipart/form-data body as a browser or curl sends it: `(name, filename, bytes)` per
/// field. Returns the Content-Type (with its boundary) and the body.
pub fn multipart_form(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "------------------------imgpipe7d3f9a";
    let mut body = Vec::new();
    for (name, filename, bytes) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(file) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: text/csv\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
