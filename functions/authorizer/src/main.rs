//! The authorizer: API Gateway asks it, before every route but `GET /api/health` and
//! `GET /api/openapi.json`, which tenant the request's `Authorization` header speaks for
//! (template.yaml's `ApiAuthorizer`).

mod handler;

use imgpipe_core::adapters::aws::{DynamoTable, sdk_config};
use imgpipe_core::config::{AuthorizerConfig, sdk_operation_timeout};
use lambda_runtime::service_fn;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    imgpipe_core::logging::init();
    let config = AuthorizerConfig::from_env()?;
    let sdk = sdk_config(sdk_operation_timeout()?).await;
    let authorizer = handler::Authorizer { keys: DynamoTable::new(&sdk, &config.table, config.item_lifetime) };
    lambda_runtime::run(service_fn(|event| authorizer.handle(event))).await
}
