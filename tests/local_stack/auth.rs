//! API keys through the emulator's HTTP API and the real authorizer binary (template.yaml's
//! ApiAuthorizer, no result cache on the local stack): who gets 401, who gets 403, who reaches
//! the API, and the two routes open to all.

use std::path::Path;
use std::process::Command;

use imgpipe_core::domain::api_key::ApiKey;
use imgpipe_core::ports::AuthenticateKeys;
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::stack::LocalStack;
use serde_json::{Value, json};

use crate::STACK_USE;

/// A path every key-holding caller reaches: the API itself answers it (an unknown request).
fn unknown_request_path() -> String {
    format!("/api/status/{}/", uuid::Uuid::new_v4())
}

async fn answer(api: &ApiClient, path: &str) -> (u16, Value) {
    let response = api.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The API function answered (a JSON 404 of its own for an unknown request), not API Gateway.
fn assert_reached_the_api(status: u16, body: &Value, who: &str) {
    assert_eq!((status, &body["error"]), (404, &json!("not_found")), "{who}: {body}");
}

#[tokio::test]
async fn without_a_key_api_gateway_answers_401() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    for api in [ApiClient::without_key(stack), ApiClient::with_authorization(stack, Some(""))] {
        let (status, body) = answer(&api, &unknown_request_path()).await;
        assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    }
    let upload = ApiClient::without_key(stack).upload(b"S. No.,Product Name,Input Image Urls\n", None).await;
    assert_eq!(upload.status, 401, "{}", upload.body);
}

#[tokio::test]
async fn a_malformed_unknown_or_wrong_key_gets_403() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let good = stack.key_for("auth-wrong-keys");
    let key_id = &good["ik_".len().."ik_".len() + 16];
    let cases = [
        "Bearer not-a-key".to_string(),
        format!("Basic {good}"),
        format!("Bearer {}", &good[..good.len() - 1]),
        format!("Bearer {}", ApiKey::generate().unwrap().reveal()),
        format!("Bearer ik_{key_id}_{}", "0".repeat(64)),
    ];
    for header in cases {
        let api = ApiClient::with_authorization(stack, Some(&header));
        let (status, body) = answer(&api, &unknown_request_path()).await;
        assert_eq!((status, &body), (403, &json!({"message": "Forbidden"})), "{header}");
    }
}

/// A new key reaches the API at once, and the authorizer writes down its first use.
#[tokio::test]
async fn a_good_key_reaches_the_api_and_its_use_is_recorded() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let key = stack.key_for("auth-good-key");
    let (status, body) = answer(&ApiClient::for_tenant(stack, "auth-good-key"), &unknown_request_path()).await;
    assert_reached_the_api(status, &body, "a good key");
    let key_id = ApiKey::parse(&key).unwrap().key_id().to_string();
    let record = stack.table().await.key(&key_id).await.unwrap().expect("the key's item");
    assert!(record.last_used_at.is_some(), "the authorizer records the key's use: {record:?}");
}

/// The operator's path end to end: imgpipe-admin makes a key, lists it without its secret and
/// revokes it; the next call with it is refused (the local stack caches no authorizer answer).
#[tokio::test]
async fn a_key_revoked_with_imgpipe_admin_is_refused_on_the_next_call() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let tenant = format!("auth-admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let created = admin(stack, &["keys", "create", "--tenant", &tenant]);
    let key = created.lines().last().expect("the key on the last line").to_string();
    let key_id =
        ApiKey::parse(&key).unwrap_or_else(|_| panic!("a key on the last line: {created}")).key_id().to_string();
    let api = ApiClient::with_authorization(stack, Some(&format!("Bearer {key}")));

    let (status, body) = answer(&api, &unknown_request_path()).await;
    assert_reached_the_api(status, &body, "the new key");
    let listed = admin(stack, &["keys", "list", "--tenant", &tenant]);
    let row = listed.lines().find(|line| line.starts_with(&key_id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains(&tenant) && row.contains("active") && !row.contains("never"), "used and active: {row}");
    assert!(!listed.contains(&key["ik_".len() + 17..]), "the listing shows no secret: {listed}");

    assert!(admin(stack, &["keys", "revoke", &key_id]).contains("Revoked"));
    let (status, _) = answer(&api, &unknown_request_path()).await;
    assert_eq!(status, 403, "a revoked key is refused at once");
    let listed = admin(stack, &["keys", "list", "--tenant", &tenant]);
    assert!(listed.lines().any(|line| line.starts_with(&key_id) && line.contains("revoked")), "{listed}");
    assert!(admin(stack, &["keys", "revoke", &key_id]).contains("already revoked"));
}

/// `GET /api/health` and `GET /api/openapi.json` are the only routes without the authorizer:
/// they reach the API without a key. Any other method on the same paths still needs a key.
#[tokio::test]
async fn only_get_api_health_and_the_description_answer_without_a_key() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let open = ApiClient::without_key(stack);
    let (status, body) = answer(&open, "/api/health").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})), "GET /api/health without a key");
    let (status, body) = answer(&open, "/api/openapi.json").await;
    assert_eq!((status, &body["openapi"]), (200, &json!("3.1.0")), "GET /api/openapi.json without a key: {body}");
    for path in ["/api/health", "/api/openapi.json"] {
        let post = stack.http_client_with(None).post(format!("{}{path}", stack.api_url)).send().await.unwrap();
        assert_eq!(post.status(), 401, "POST {path} goes through the authorizer");
    }
}

/// Runs imgpipe-admin against the test stack's table (the emulator's endpoint and credentials
/// are in this process's environment) and returns what it printed.
fn admin(stack: &LocalStack, args: &[&str]) -> String {
    let binary = Path::new(&stack.bin_dir).join("imgpipe-admin");
    let output = Command::new(&binary)
        .args(["--table", &stack.table_name])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "imgpipe-admin {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}
