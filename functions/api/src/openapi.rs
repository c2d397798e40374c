//! The OpenAPI 3.1 description of the API, generated from the handlers' `#[utoipa::path]`
//! attributes and the answer types (answers.rs), so it cannot drift from what the code
//! serialises. Served at `GET /api/openapi.json` (without a key) and kept in docs/openapi.json,
//! from which docs/imgpipe.postman_collection.json is generated; the tests below fail when
//! either the file or the router's routes differ from it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::{list, manage, requests, routes, upload, uploads};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imgpipe",
        description = "Bulk image compression from a CSV. Every route but `GET /api/health` and \
                       `GET /api/openapi.json` needs an API key: `Authorization: Bearer ik_...`. \
                       Errors are `ErrorAnswer` with a stable `error` code; refusals of API Gateway itself \
                       (401, 403, and on AWS 429 throttling and 500 when the authorizer fails) are \
                       `{\"message\": ...}`. Reference: docs/api.md.",
    ),
    paths(
        upload::upload,
        uploads::reserve,
        list::list_requests,
        requests::status,
        requests::output_csv,
        requests::errors_csv,
        requests::images_page,
        requests::image,
        manage::cancel,
        manage::retry,
        routes::health,
        openapi_json,
    ),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
    tags(
        (name = "requests", description = "Upload a CSV; follow the request it becomes."),
        (name = "outputs", description = "A request's images and its output CSV and errors report."),
        (name = "service", description = "Open routes: health and this description."),
    ),
)]
pub struct ApiDoc;

/// The API key as a bearer token (docs/api.md, Authentication).
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("ik_<key id>_<secret>")
            .description(Some("An API key made with imgpipe-admin."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
        // utoipa copies Cargo.toml's license, which this unpublished crate leaves empty.
        openapi.info.license = None;
    }
}

/// API Gateway's own refusal (401, 403), before the API is asked: not an `ErrorAnswer`.
#[derive(Serialize, ToSchema)]
pub struct GatewayRefusal {
    #[schema(example = "Unauthorized")]
    pub message: String,
}

/// The multipart form of an upload (upload_form.rs reads it).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes a request body; the handler reads the form with multer.
pub struct UploadFormFields {
    /// The CSV.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The URL to notify when the request ends.
    pub webhook_url: Option<String>,
}

/// The description as served and as kept in docs/openapi.json: pretty JSON, one final newline.
pub fn description_json() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().expect("the description serialises");
    json.push('\n');
    json
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "service",
    summary = "This description (OpenAPI 3.1)",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description.", content_type = "application/json",
               body = Object)),
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], description_json()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    /// Where the description is kept in the repository.
    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    /// docs/openapi.json is what the code generates (the Postman collection and readers of the
    /// repository use it). `IMGPIPE_WRITE_OPENAPI=1` rewrites it instead (`make openapi`).
    #[test]
    fn committed_description_is_current() {
        let generated = description_json();
        let path = committed_path();
        if std::env::var_os("IMGPIPE_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is not what the code describes; regenerate it with `make openapi` and commit it",
            path.display()
        );
    }

    /// Every `(METHOD, path)` the router serves, read from routes.rs, with the trailing slash
    /// dropped (the upload and status paths answer both ways).
    fn routed() -> BTreeSet<(String, String)> {
        let source = include_str!("routes.rs");
        let mut routes = BTreeSet::new();
        for call in source.split(".route(").skip(1) {
            let call = call.split("\n        .").next().unwrap_or(call);
            let path = call.split('"').nth(1).expect("a route's path is a string literal");
            for method in ["get", "post", "put", "patch", "delete"] {
                if call.contains(&format!(" {method}(")) || call.contains(&format!(".{method}(")) {
                    routes.insert((method.to_uppercase(), path.trim_end_matches('/').to_string()));
                }
            }
        }
        routes
    }

    fn described() -> BTreeSet<(String, String)> {
        let description = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = description["paths"].as_object().unwrap();
        let mut routes = BTreeSet::new();
        for (path, operations) in paths {
            for method in operations.as_object().unwrap().keys() {
                routes.insert((method.to_uppercase(), path.trim_end_matches('/').to_string()));
            }
        }
        routes
    }

    /// A route added to the router without a description (or described but not routed) fails here.
    #[test]
    fn every_route_is_described_and_every_description_routed() {
        let (routed, described) = (routed(), described());
        assert!(routed.len() >= 9, "routes.rs read: {routed:?}");
        let undescribed: Vec<_> = routed.difference(&described).collect();
        let unrouted: Vec<_> = described.difference(&routed).collect();
        assert!(
            undescribed.is_empty() && unrouted.is_empty(),
            "routed but not in the OpenAPI description (add #[utoipa::path] and list it in openapi.rs): \
             {undescribed:?}; described but not routed: {unrouted:?}"
        );
    }
}
