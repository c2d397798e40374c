//! Tables for tests that exercise the DynamoDB adapter directly.

use std::time::Duration;

use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex};
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
