//! AWS adapters of the ports. Endpoints come from the standard SDK settings
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials), so the same code talks to the local
//! emulator, LocalStack or AWS.

mod dynamo;
mod s3;
mod sqs;

pub use dynamo::DynamoTable;
pub use s3::S3Blobs;
pub use sqs::SqsQueue;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::domain::errors::StoreError;

/// Loads region, credentials and endpoint from the environment, once per process.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
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
