//! AWS adapters of the ports. Endpoints come from the standard SDK settings
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials), so the same code talks to the local
//! emulator, LocalStack or AWS.

mod dynamo;
mod s3;
mod secrets;
mod sqs;

pub use dynamo::DynamoTable;
pub use s3::S3Blobs;
pub use secrets::webhook_signing_key;
pub use sqs::SqsQueue;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::domain::errors::StoreError;

/// Loads region, credentials and endpoint from the environment, once per process. Every call
/// is bounded by `operation_timeout` (SDK_OPERATION_TIMEOUT_SECS, `config::sdk_operation_timeout`),
/// its retries included, and each attempt by half of it: without a bound, a call to a stalled
/// endpoint waits as long as the Lambda lives, and the jobs of its batch are killed with it
/// instead of being handed back (`domain::delivery::TimeReserves`).
pub async fn sdk_config(operation_timeout: Duration) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(operation_timeout)
        .operation_attempt_timeout(operation_timeout / 2)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await
}

/// Error codes AWS services use for "slow down" or "try again".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "InternalServerError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
];

/// Decides, for every SDK call, whether a failure is worth retrying.
fn store_error<E>(service: &'static str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string();
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(context) => {
            context.raw().status().as_u16() >= 500
                || context.err().code().is_some_and(|code| RETRYABLE_CODES.contains(&code))
        }
        _ => false,
    };
    if transient { StoreError::Unavailable { service, detail } } else { StoreError::Refused { service, detail } }
}
