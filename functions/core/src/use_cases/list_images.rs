//! A request's images as users see them: every input URL in output order, with its result
//! where one is recorded and PENDING elsewhere (results are the only image items stored).

use crate::domain::request::{ImageRecord, ImageState, RequestRecord, image_as_shown, image_jobs};
use crate::ports::{BlobStore, ReadResults};
use crate::use_cases::stored_csv::{StoredCsvError, read_stored_csv};

/// Up to `limit` images after index `after` (from the start if `None`), and the index to
/// continue after when there are more.
pub async fn list_images(
    results: &dyn ReadResults,
    blobs: &dyn BlobStore,
    request: &RequestRecord,
    after: Option<u32>,
    limit: u32,
) -> Result<(Vec<ImageRecord>, Option<u32>), StoredCsvError> {
    let total = request.total.min(u32::MAX as u64) as u32;
    let first = after.map_or(0, |index| index.saturating_add(1));
    if first >= total || limit == 0 {
        return Ok((Vec::new(), None));
    }
    let last = first.saturating_add(limit - 1).min(total - 1);
    let id = request.request_id;
    let mut recorded = results.recorded_images_between(id, first, last).await?;
    let next = (last + 1 < total).then_some(last);
    if recorded.len() == (last - first + 1) as usize {
        return Ok((recorded, next));
    }
    // Some are pending: their URLs and rows come from the stored CSV.
    let csv = read_stored_csv(blobs, request).await?;
    let mut page = Vec::with_capacity((last - first + 1) as usize);
    let mut recorded = recorded.drain(..).peekable();
    for job in &image_jobs(request, &csv)[first as usize..=last as usize] {
        page.push(image_as_shown(request, job, recorded.next_if(|image| image.image_index == job.image_index)));
    }
    Ok((page, next))
}

/// Images read per page while looking for a cancelled request's first failures.
const FAILURE_SCAN_PAGE: u32 = 1000;

/// The first `limit` failed images of `request`, in image order. Recorded failures come from
/// their index without reading the successes; a cancelled request's images without a result
/// are failures too (`cancelled`), found by reading its images in order until `limit` are found.
pub async fn first_failures(
    results: &dyn ReadResults,
    blobs: &dyn BlobStore,
    request: &RequestRecord,
    limit: usize,
) -> Result<Vec<ImageRecord>, StoredCsvError> {
    if request.cancelled == 0 {
        return Ok(results.failed_images(request.request_id, limit).await?);
    }
    let mut failures = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = list_images(results, blobs, request, after, FAILURE_SCAN_PAGE).await?;
        failures.extend(page.into_iter().filter(|image| image.state == ImageState::Failed));
        if failures.len() >= limit || next.is_none() {
            failures.truncate(limit);
            return Ok(failures);
        }
        after = next;
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable};
    use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
    use crate::domain::request::{ImageOutcome, Progress};
    use crate::domain::request_id::RequestId;
    use crate::ports::{CreateRequest, RecordResult};
    use crate::test_support::{NO_QUOTA, tenant};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,\"https://img.example/c.webp,https://img.example/d.gif,https://img.example/e.jpg\"\n";

    #[tokio::test]
    async fn pages_merge_recorded_results_with_pending_images_in_order() {
        let (table, blobs) = (MemoryTable::default(), MemoryBlobs::default());
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, tenant(), 5, None, Utc::now());
        blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
        table.create(&request, &NO_QUOTA).await.unwrap();
        let csv = ValidatedCsv::parse(CSV.as_bytes(), &CsvLimits::default()).unwrap();
        let jobs = image_jobs(&request, &csv);
        let failed = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
        table.record(&jobs[1], &failed, Utc::now(), Progress::Made).await.unwrap();

        let (page, next) = list_images(&table, &blobs, &request, None, 3).await.unwrap();
        let states: Vec<(u32, ImageState)> = page.iter().map(|image| (image.image_index, image.state)).collect();
        assert_eq!(states, [(0, ImageState::Pending), (1, ImageState::Failed), (2, ImageState::Pending)]);
        assert_eq!((page[2].row, page[2].input_url.as_str()), (1, "https://img.example/c.webp"));
        assert_eq!(next, Some(2));

        let (page, next) = list_images(&table, &blobs, &request, next, 3).await.unwrap();
        assert_eq!(page.iter().map(|image| image.image_index).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(next, None);
        assert!(list_images(&table, &blobs, &request, Some(4), 3).await.unwrap().0.is_empty());
    }
}
