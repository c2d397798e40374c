//! The only way a string becomes an image URL the service will fetch.
//!
//! Everything downstream (download, logging, output CSV) relies on these rules
//! having been applied once, here, so they never re-check.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An absolute `http`/`https` URL with a host and no credentials.
///
/// Credentials are refused because the URL is echoed into the output CSV and
/// into request records, where a password would leak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(url::Url);

/// In API answers (the OpenAPI description) an `HttpUrl` is the string it serialises to.
impl utoipa::PartialSchema for HttpUrl {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uri))).into()
    }
}

impl utoipa::ToSchema for HttpUrl {}

/// Why a string is not an acceptable image URL.
///
/// The messages are shown to the person who uploaded the CSV, so they say what
/// is wrong in plain words and never repeat the URL (the caller decides whether
/// and how to show it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    #[error("the URL is empty")]
    Empty,
    #[error("not an absolute URL")]
    NotAbsolute,
    #[error("scheme must be http or https, found {found}")]
    SchemeNotAllowed { found: String },
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not contain a user name or password")]
    HasCredentials,
    #[error("not a valid URL: {0}")]
    Malformed(String),
    #[error("the URL is {length} characters long, more than the limit of {limit}")]
    TooLong { length: usize, limit: usize },
}

impl HttpUrl {
    /// Surrounding whitespace is ignored because spreadsheet cells routinely
    /// carry it, and it can never be part of a meaningful URL.
    pub fn parse(input: &str) -> Result<HttpUrl, InvalidUrl> {
        let input = input.trim();
        if input.is_empty() {
            return Err(InvalidUrl::Empty);
        }
        let url = url::Url::parse(input).map_err(|error| match error {
            url::ParseError::RelativeUrlWithoutBase => InvalidUrl::NotAbsolute,
            url::ParseError::EmptyHost => InvalidUrl::NoHost,
            other => InvalidUrl::Malformed(other.to_string()),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidUrl::SchemeNotAllowed { found: url.scheme().to_owned() });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidUrl::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidUrl::HasCredentials);
        }
        Ok(HttpUrl(url))
    }

    /// As [`HttpUrl::parse`], and at most `max_length` characters long as the URL is stored
    /// and fetched (non-ASCII percent-encoded, so every character is one byte): what a
    /// request's items and job messages hold must stay within their services' size limits.
    pub fn parse_at_most(input: &str, max_length: usize) -> Result<HttpUrl, InvalidUrl> {
        let url = HttpUrl::parse(input)?;
        match url.as_str().len() {
            length if length > max_length => Err(InvalidUrl::TooLong { length, limit: max_length }),
            _ => Ok(url),
        }
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = InvalidUrl;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        HttpUrl::parse(&value)
    }
}

impl From<HttpUrl> for String {
    fn from(value: HttpUrl) -> Self {
        value.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        for input in ["http://example.com/a.jpg", "https://cdn.example.com/img/b.png?w=200"] {
            let url = HttpUrl::parse(input).expect("valid URL");
            assert_eq!(url.as_str(), input);
        }
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let url = HttpUrl::parse("  https://example.com/a.jpg \n").expect("valid URL");
        assert_eq!(url.as_str(), "https://example.com/a.jpg");
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(HttpUrl::parse("   "), Err(InvalidUrl::Empty));
    }

    #[test]
    fn relative_url_is_rejected() {
        let error = HttpUrl::parse("images/a.jpg").unwrap_err();
        assert_eq!(error, InvalidUrl::NotAbsolute);
        assert_eq!(error.to_string(), "not an absolute URL");
    }

    #[test]
    fn other_schemes_are_rejected() {
        let error = HttpUrl::parse("ftp://example.com/a.jpg").unwrap_err();
        assert_eq!(error.to_string(), "scheme must be http or https, found ftp");
        for input in ["file:///etc/passwd", "javascript:alert(1)", "data:image/png;base64,AAAA"] {
            assert!(
                matches!(HttpUrl::parse(input), Err(InvalidUrl::SchemeNotAllowed { .. })),
                "{input} should be refused"
            );
        }
    }

    #[test]
    fn url_without_host_is_rejected() {
        for input in ["http://", "https://:8080/a.jpg"] {
            let error = HttpUrl::parse(input).unwrap_err();
            assert_eq!(error, InvalidUrl::NoHost, "{input}");
            assert_eq!(error.to_string(), "URL has no host");
        }
    }

    #[test]
    fn credentials_are_rejected() {
        for input in ["https://user:secret@example.com/a.jpg", "https://user@example.com/a.jpg"] {
            let error = HttpUrl::parse(input).unwrap_err();
            assert_eq!(error, InvalidUrl::HasCredentials, "{input}");
            assert_eq!(error.to_string(), "URL must not contain a user name or password");
        }
    }

    #[test]
    fn malformed_url_is_rejected_with_the_parser_reason() {
        let error = HttpUrl::parse("https://exa mple.com/a.jpg").unwrap_err();
        assert!(matches!(error, InvalidUrl::Malformed(_)), "{error:?}");
        assert!(error.to_string().starts_with("not a valid URL: "));
    }

    #[test]
    fn length_is_limited_on_the_stored_form() {
        let url = format!("https://example.com/{}", "a".repeat(12));
        assert_eq!(HttpUrl::parse_at_most(&url, 32).unwrap().as_str(), url);
        assert_eq!(HttpUrl::parse_at_most(&format!("{url}a"), 32), Err(InvalidUrl::TooLong { length: 33, limit: 32 }));
        // Five characters written, "%C3%A9" (six) stored for each "é".
        let error = HttpUrl::parse_at_most("https://example.com/ééééé", 32).unwrap_err();
        assert_eq!(error.to_string(), "the URL is 50 characters long, more than the limit of 32");
    }

    #[test]
    fn display_and_as_url_agree_with_as_str() {
        let url = HttpUrl::parse("https://example.com/a.jpg").expect("valid URL");
        assert_eq!(url.to_string(), url.as_str());
        assert_eq!(url.as_url().host_str(), Some("example.com"));
    }

    #[test]
    fn serde_uses_the_plain_string_and_reapplies_the_rules() {
        let url = HttpUrl::parse("https://example.com/a.jpg").expect("valid URL");
        let json = serde_json::to_string(&url).expect("serialises");
        assert_eq!(json, r#""https://example.com/a.jpg""#);
        let back: HttpUrl = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, url);
        assert!(serde_json::from_str::<HttpUrl>(r#""ftp://example.com/a.jpg""#).is_err());
    }
}
