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
/// are failures too (`cancelled`), found by reading its results in order, a page at a time,
/// until `limit` are found (its stored CSV, for their URLs, is read once, if at all).
pub async fn first_failures(
    results: &dyn ReadResults,
    blobs: &dyn BlobStore,
    request: &RequestRecord,
    limit: usize,
) -> Result<Vec<ImageRecord>, StoredCsvError> {
    if request.cancelled == 0 {
        return Ok(results.failed_images(request.request_id, limit).await?);
    }
    let total = request.total.min(u32::MAX as u64) as u32;
    let mut jobs = None;
    let mut failures = Vec::new();
    let mut first = 0;
    while first < total && failures.len() < limit {
        let last = first.saturating_add(FAILURE_SCAN_PAGE - 1).min(total - 1);
        let recorded = results.recorded_images_between(request.request_id, first, last).await?;
        if recorded.len() == (last - first + 1) as usize {
            failures.extend(recorded.into_iter().filter(|image| image.state == ImageState::Failed));
        } else {
            let jobs = match &jobs {
                Some(jobs) => jobs,
                None => jobs.insert(image_jobs(request, &read_stored_csv(blobs, request).await?)),
            };
            let mut recorded = recorded.into_iter().peekable();
            for job in &jobs[first as usize..=last as usize] {
                let image =
                    image_as_shown(request, job, recorded.next_if(|image| image.image_index == job.image_index));
                if image.state == ImageState::Failed {
                    failures.push(image);
                }
            }
        }
        first = last + 1;
    }
    failures.truncate(limit);
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable};
    use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
    use crate::domain::request::{ImageOutcome, Progress};
    use crate::domain::request_id::RequestId;
    use crate::ports::{CreateRequest, MoveRequest, ReadRequest, RecordResult};
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

    #[tokio::test]
    async fn a_cancelled_requests_first_failures_are_found_past_a_page_of_successes() {
        let (table, blobs) = (MemoryTable::default(), MemoryBlobs::default());
        let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
        for i in 0..2_500 {
            csv.push_str(&format!("{i},Item,https://img.example/{i}.jpg\n"));
        }
        let request = RequestRecord::new(RequestId::new_random(), tenant(), 2_500, None, Utc::now());
        blobs.put(&request.input_csv_key, csv.clone().into(), "text/csv").await.unwrap();
        table.create(&request, &NO_QUOTA).await.unwrap();
        let jobs = image_jobs(&request, &ValidatedCsv::parse(csv.as_bytes(), &CsvLimits::default()).unwrap());
        let done = ImageOutcome::Done { output_key: "out.jpg".into(), bytes_in: 10, bytes_out: 5, note: None };
        let failed = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
        for job in &jobs[..1_500] {
            table.record(job, &done, Utc::now(), Progress::Made).await.unwrap();
        }
        table.record(&jobs[1_501], &failed, Utc::now(), Progress::Made).await.unwrap();
        let seen = table.get(request.request_id).await.unwrap().unwrap();
        table
            .cancel(&seen, &crate::domain::request::FinalState::cancelled(&seen, Utc::now()), Utc::now())
            .await
            .unwrap();
        let cancelled = table.get(request.request_id).await.unwrap().unwrap();

        let failures = first_failures(&table, &blobs, &cancelled, 100).await.unwrap();
        assert_eq!(failures.len(), 100);
        let first: Vec<(u32, &str)> =
            failures[..3].iter().map(|image| (image.image_index, image.error_code.as_deref().unwrap())).collect();
        assert_eq!(first, [(1_500, "cancelled"), (1_501, "http_status_404"), (1_502, "cancelled")]);
        assert_eq!(failures[99].image_index, 1_599);
    }
}
