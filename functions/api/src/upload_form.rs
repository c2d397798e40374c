//! Reading an upload: a multipart form (field `file`, optional `webhook_url`) or a raw CSV
//! body (`text/csv`, with `webhook_url` in the query string).

use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;

pub struct UploadForm {
    pub csv: Bytes,
    pub webhook_url: Option<String>,
}

/// Why the request is not an upload at all; the CSV inside is checked later.
pub struct FormError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl FormError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "bad_upload", message: message.into() }
    }
}

pub async fn read_upload(
    headers: &HeaderMap,
    query_webhook: Option<String>,
    body: Bytes,
) -> Result<UploadForm, FormError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "multipart/form-data" => read_multipart(content_type, body).await,
        "text/csv" | "application/csv" | "text/plain" => Ok(UploadForm { csv: body, webhook_url: query_webhook }),
        _ => Err(FormError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "send the CSV as multipart/form-data (field `file`) or as a text/csv body".into(),
        }),
    }
}

async fn read_multipart(content_type: &str, body: Bytes) -> Result<UploadForm, FormError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| FormError::bad_request("the multipart Content-Type has no boundary"))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = UploadForm { csv: Bytes::new(), webhook_url: None };
    let mut has_file = false;
    let unreadable = |e: multer::Error| FormError::bad_request(format!("the multipart body is malformed: {e}"));
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name() {
            Some("file") => {
                form.csv = field.bytes().await.map_err(unreadable)?;
                has_file = true;
            }
            Some("webhook_url") => form.webhook_url = Some(field.text().await.map_err(unreadable)?),
            // Other fields are not ours to interpret; ignoring them keeps forms forgiving.
            _ => {}
        }
    }
    if !has_file {
        return Err(FormError::bad_request("the form has no `file` field with the CSV"));
    }
    Ok(form)
}
