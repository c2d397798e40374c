//! Tables for tests that exercise the DynamoDB adapter directly.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, BillingMode, GlobalSecondaryIndex};
use imgpipe_core::adapters::aws::DynamoTable;

use crate::stack::LocalStack;

/// A fresh table with the keys and indexes of the deployed one (template.yaml's `Table`, read
/// back with DescribeTable), so that tests meet the schema the functions run on, and the deployed
/// functions (the notifier's stream, the sweeper) never see the test's items.
pub async fn fresh_table() -> DynamoTable {
    let stack = LocalStack::shared();
    let sdk = stack.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let deployed = client
        .describe_table()
        .table_name(&stack.table_name)
        .send()
        .await
        .expect("describe the deployed table")
        .table
        .expect("a table description");
    let indexes = deployed
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .set_index_name(index.index_name.clone())
                .set_key_schema(index.key_schema.clone())
                .set_projection(index.projection.clone())
                .build()
                .expect("an index definition")
        })
        .collect();
    let name = format!("test-table-{}", uuid::Uuid::new_v4());
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(deployed.key_schema)
        .set_attribute_definitions(deployed.attribute_definitions)
        .set_global_secondary_indexes(Some(indexes))
        .send()
        .await
        .expect("create a test table");
    DynamoTable::new(&sdk, name, Duration::from_secs(3600))
}

/// The tenant's images in requests not final (`domain::quota`).
pub async fn open_images(stack: &LocalStack, tenant: &str) -> u64 {
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    let item = dynamo
        .get_item()
        .table_name(&stack.table_name)
        .key("pk", AttributeValue::S(format!("TENANT#{tenant}")))
        .key("sk", AttributeValue::S("TENANT".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the tenant's item")
        .item
        .unwrap_or_default();
    match item.get("open_images") {
        Some(AttributeValue::N(open)) => open.parse().unwrap(),
        _ => 0,
    }
}

/// Sets the tenant's images in requests not final, as if other requests held them.
pub async fn set_open_images(stack: &LocalStack, tenant: &str, open: u64) {
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    dynamo
        .update_item()
        .table_name(&stack.table_name)
        .key("pk", AttributeValue::S(format!("TENANT#{tenant}")))
        .key("sk", AttributeValue::S("TENANT".into()))
        .update_expression("SET open_images = :open")
        .expression_attribute_values(":open", AttributeValue::N(open.to_string()))
        .send()
        .await
        .expect("set the tenant's open images");
}
