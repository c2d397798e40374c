//! Which table the command acts on: a deployed stack's, with the operator's AWS credentials, or
//! the local stack's, from the outputs.json that `infra/local.py up` writes.

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};
use imgpipe_core::adapters::aws::DynamoTable;
use serde::Deserialize;

/// The part of the local stack's outputs.json the command needs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LocalOutputs {
    table_name: String,
    endpoint: String,
}

/// Key items never expire, so the table adapter's item lifetime is never used here.
const UNUSED_ITEM_LIFETIME: Duration = Duration::ZERO;

pub async fn table(table: Option<String>, local_stack: Option<&Path>) -> Result<DynamoTable, String> {
    if let Some(state) = local_stack {
        let path = state.join("outputs.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e}; is the local stack up (`make up`)?", path.display()))?;
        let outputs: LocalOutputs = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // The emulator's own credentials and region, whatever the operator's environment holds:
        // --local must never reach AWS.
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(outputs.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "imgpipe-local-stack"))
            .load()
            .await;
        return Ok(DynamoTable::new(&sdk, outputs.table_name, UNUSED_ITEM_LIFETIME));
    }
    let table =
        table.ok_or("name the table with --table or TABLE_NAME (the stack's TableName output), or use --local")?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    Ok(DynamoTable::new(&sdk, table, UNUSED_ITEM_LIFETIME))
}
