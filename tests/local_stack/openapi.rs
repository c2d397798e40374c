//! The running API against its OpenAPI description (docs/openapi.json): schemathesis, pinned
//! in infra/requirements.txt, generates requests for every described operation, valid and
//! invalid, and checks every answer: no 5xx, the status documented for the operation, the
//! content type and headers listed, the body matching its schema. The end-to-end tests hold
//! their own answers against the same description (imgpipe_tests::openapi), so success bodies
//! of requests that really ran are checked there.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::ImageServer;
use imgpipe_tests::stack::{LocalStack, workspace_root};

use crate::STACK_USE;

/// What schemathesis checks on each answer (not `negative_data_rejection` and the like: the API
/// accepts and ignores unknown form fields and query parameters on purpose).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";
/// Cases per operation and phase: enough to reach each documented answer, under a minute.
const MAX_EXAMPLES: &str = "25";
/// Fixed, so a failure seen once is seen again on the next run.
const SEED: &str = "13";

#[tokio::test]
async fn the_running_api_answers_only_what_its_description_allows() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    // A finished request of the fuzzing tenant, so that its listing has an entry to check.
    let api = ApiClient::for_tenant(stack, "openapi-fuzz");
    let files = HashMap::from([("a.jpg".to_string(), (photo_jpeg(64, 48, 3), "image/jpeg"))]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let csv = format!("S. No.,Product Name,Input Image Urls\n1,Lamp,{}\n", server.url("img/a.jpg"));
    let accepted = api.upload_raw(csv.as_bytes(), "text/csv").await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    api.wait_until_final(accepted.body["request_id"].as_str().unwrap(), Duration::from_secs(60)).await;

    // The API is reached by its host name (*.execute-api.localhost), which needs no resolver
    // when the connection goes to 127.0.0.1 with that name in `Host`.
    let host = stack.api_url.trim_start_matches("http://");
    let port = host.rsplit_once(':').expect("the API's address has a port").1;
    let root = workspace_root();
    // It keeps replays and Hypothesis data in its working directory: an ignored one.
    let scratch = root.join("target/schemathesis");
    std::fs::create_dir_all(&scratch).expect("create target/schemathesis");
    let description = root.join("docs/openapi.json");
    let output = Command::new(root.join(".venv/bin/schemathesis"))
        .current_dir(&scratch)
        .arg("run")
        .arg(&description)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["-H", &format!("Host: {host}")])
        .args(["-H", &format!("Authorization: Bearer {}", stack.key_for("openapi-fuzz"))])
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--phases", "examples,coverage,fuzzing", "--workers", "2", "--max-redirects", "0"])
        .args(["--generation-database", "none", "--no-color", "--output-truncate", "false"])
        .output()
        .expect("run .venv/bin/schemathesis (make setup installs it)");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found answers the description does not allow:\n{printed}");
}
