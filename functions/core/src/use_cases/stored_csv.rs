//! Reading a request's CSV back from the bucket, for the steps that need its rows again (the
//! fan-out, the sweeper, finishing, the image listing). One behaviour for all of them: a CSV
//! that is gone or does not parse is our own data corrupted, never worth a retry.

use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
use crate::domain::errors::StoreError;
use crate::domain::request::RequestRecord;
use crate::ports::BlobStore;

#[derive(Debug, thiserror::Error)]
pub enum StoredCsvError {
    /// The bucket could not be read: transient or not, as the store says.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the input CSV is missing")]
    Missing,
    #[error("the input CSV does not parse: {0}")]
    Unreadable(String),
}

/// The stored CSV of `request`. It passed validation at upload; it is read back without limits
/// so that a later change of limits cannot strand a request accepted under the old ones.
pub async fn read_stored_csv(blobs: &dyn BlobStore, request: &RequestRecord) -> Result<ValidatedCsv, StoredCsvError> {
    let bytes = blobs.get(&request.input_csv_key).await?.ok_or(StoredCsvError::Missing)?;
    ValidatedCsv::parse(&bytes, &CsvLimits::unlimited()).map_err(|e| StoredCsvError::Unreadable(e.to_string()))
}
