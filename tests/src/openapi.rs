//! Every answer the tests receive from the API, held against its OpenAPI description
//! (docs/openapi.json, which the api crate's tests keep equal to what the code generates): the
//! status must be documented for the route, the content type listed for that status, and a JSON
//! body must match its schema, formats included. An answer the description does not allow fails
//! the test that received it, so every end-to-end run checks the success bodies too, which a
//! fuzzer with random ids rarely reaches. Paths the description does not have (the tests of
//! unknown endpoints and methods) are not its concern and pass unchecked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::stack::workspace_root;

/// The description, read once per test process.
pub fn description() -> &'static Value {
    static DESCRIPTION: OnceLock<Value> = OnceLock::new();
    DESCRIPTION.get_or_init(|| {
        let path = workspace_root().join("docs/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    })
}

/// The described path that `path` (the URL's path, without query) is an instance of: literal
/// segments equal, `{name}` segments any non-empty segment; the trailing slash is optional, as
/// on the API.
pub fn described_path(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    description()["paths"].as_object()?.keys().map(String::as_str).find(|template| {
        let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| if t.starts_with('{') && t.ends_with('}') { !s.is_empty() } else { t == s })
    })
}

/// Panics, naming the route, when the description does not allow this answer.
pub fn check_answer(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let Some(template) = described_path(path) else { return };
    let Some(operation) = description()["paths"][template].get(method.to_ascii_lowercase()) else { return };
    let route = format!("{method} {template}");
    let Some(response) = operation["responses"].get(status.to_string()) else {
        let text = String::from_utf8_lossy(body);
        panic!("{route} answered {status}, a status its OpenAPI description does not list: {text}");
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else { return };
    let mime = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some(media) = content.get(&mime) else {
        let listed: Vec<&String> = content.keys().collect();
        panic!("{route} answered {status} with Content-Type {content_type:?}; the description lists {listed:?}");
    };
    if mime != "application/json" {
        return;
    }
    let body: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{route} answered {status} with a body that is not JSON ({e})"));
    let validator = validator(&format!("{route} {status}"), &media["schema"]);
    let errors: Vec<String> = validator.iter_errors(&body).map(|e| format!("at {}: {e}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{route} answered {status} with a body its description does not allow:\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}

/// A JSON Schema 2020-12 validator of one response schema, whose `$ref`s resolve in the
/// description's components; built once per response.
fn validator(key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut validators = VALIDATORS.get_or_init(Default::default).lock().unwrap();
    let built = validators.entry(key.to_string()).or_insert_with(|| {
        let mut root = json!({"$schema": "https://json-schema.org/draft/2020-12/schema"});
        root["allOf"] = json!([schema]);
        root["components"] = description()["components"].clone();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the description's schema of {key} does not compile: {e}"));
        Arc::new(validator)
    });
    Arc::clone(built)
}

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

    use super::*;

    const JSON: Option<&str> = Some("application/json");

    fn refused(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) -> bool {
        catch_unwind(|| check_answer(method, path, status, content_type, body.as_bytes())).is_err()
    }

    #[test]
    fn ids_in_paths_match_the_described_templates_with_or_without_the_slash() {
        let id = "0c8f3a5e-4b1d-4e7a-9a51-3f7c2d9e8b10";
        assert_eq!(described_path(&format!("/api/status/{id}")), Some("/api/status/{request_id}/"));
        assert_eq!(
            described_path(&format!("/api/requests/{id}/images/3")),
            Some("/api/requests/{request_id}/images/{image_index}")
        );
        assert_eq!(described_path("/api/nothing-here"), None);
    }

    #[test]
    fn a_described_answer_passes_and_one_the_description_does_not_allow_fails() {
        assert!(!refused("GET", "/api/health", 200, JSON, r#"{"status": "ok"}"#));
        assert!(refused("GET", "/api/health", 201, JSON, r#"{"status": "ok"}"#), "an undocumented status");
        assert!(refused("GET", "/api/health", 200, Some("text/html"), "ok"), "an unlisted content type");
        assert!(refused("GET", "/api/health", 200, JSON, r#"{"status": 1}"#), "a field of the wrong type");
        assert!(refused("GET", "/api/health", 200, JSON, "{}"), "a required field missing");
        let error = r#"{"error": "not_found", "message": "no request with this id"}"#;
        assert!(!refused("GET", "/api/status/0c8f3a5e-4b1d-4e7a-9a51-3f7c2d9e8b10/", 404, JSON, error));
        let page = r#"{"requests": [{"request_id": "not-a-uuid"}], "next": null}"#;
        assert!(refused("GET", "/api/requests", 200, JSON, page), "an id that is not a UUID, fields missing");
    }

    #[test]
    fn paths_and_methods_the_description_does_not_have_are_not_its_concern() {
        let error = r#"{"error": "not_found", "message": "no such endpoint"}"#;
        assert!(!refused("GET", "/api/nothing-here", 404, JSON, error));
        assert!(!refused("DELETE", "/api/health", 405, JSON, error));
    }
}
