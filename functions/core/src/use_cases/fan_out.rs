//! The fan-out of an accepted request: one job per image on the queue, then `processing`.
//! It runs off the upload's path, so a 10,000-image CSV is answered as fast as a small one.
//! Running it twice only queues duplicate jobs, which record nothing twice. A retry's fan-out
//! first carries over the successes of the request it retries and queues only the other images.

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::request::{RequestStatus, Transition, image_jobs};
use crate::domain::request_id::RequestId;
use crate::ports::{BlobStore, CarryOverResults, JobQueue, MoveRequest, ReadRequest, ReadResults};
use crate::use_cases::fail_request::{FailPorts, fail_request};
use crate::use_cases::retry_request::carry_over_successes;
use crate::use_cases::stored_csv::{StoredCsvError, read_stored_csv};

pub struct FanOutPorts<'a> {
    pub requests: &'a dyn ReadRequest,
    pub lifecycle: &'a dyn MoveRequest,
    pub blobs: &'a dyn BlobStore,
    pub queue: &'a dyn JobQueue,
    pub results: &'a dyn ReadResults,
    pub carry: &'a dyn CarryOverResults,
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Data we wrote ourselves is missing or does not parse: the request is failed.
    #[error("request {0} cannot be fanned out: {1}")]
    Corrupt(RequestId, String),
}

/// `AlreadyDone` when the request has moved past `pending` (a duplicate fan-out message).
pub async fn fan_out(ports: FanOutPorts<'_>, request_id: RequestId) -> Result<Transition, FanOutError> {
    let Some(request) = ports.requests.get(request_id).await? else {
        return Err(FanOutError::Corrupt(request_id, "no request item".into()));
    };
    if request.status != RequestStatus::Pending {
        return Ok(Transition::AlreadyDone);
    }
    let csv = match read_stored_csv(ports.blobs, &request).await {
        Ok(csv) => csv,
        Err(StoredCsvError::Store(error)) => return Err(error.into()),
        Err(corrupt) => {
            let fail = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
            fail_request(fail, request_id, &corrupt.to_string(), Utc::now()).await?;
            return Err(FanOutError::Corrupt(request_id, corrupt.to_string()));
        }
    };
    let mut jobs = image_jobs(&request, &csv);
    if let Some(first) = request.retry_of {
        let carried = carry_over_successes(ports.results, ports.carry, &request, first).await?;
        jobs.retain(|job| !carried.contains(&job.image_index));
    }
    ports.queue.enqueue(&jobs).await?;
    Ok(ports.lifecycle.mark_processing(request_id, Utc::now()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable};

    fn ports<'a>(table: &'a MemoryTable, blobs: &'a MemoryBlobs, queue: &'a MemoryQueue) -> FanOutPorts<'a> {
        FanOutPorts { requests: table, lifecycle: table, blobs, queue, results: table, carry: table }
    }
    use crate::domain::request::RequestRecord;
    use crate::ports::CreateRequest;
    use crate::test_support::{NO_QUOTA, tenant};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    async fn accepted(table: &MemoryTable, blobs: &MemoryBlobs, csv: Option<&str>) -> RequestId {
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, tenant(), 3, None, Utc::now());
        if let Some(csv) = csv {
            blobs.put(&request.input_csv_key, csv.into(), "text/csv").await.unwrap();
        }
        table.create(&request, &NO_QUOTA).await.unwrap();
        id
    }

    #[tokio::test]
    async fn every_image_is_queued_in_order_then_the_request_is_processing() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;

        let ports = ports(&table, &blobs, &queue);
        assert_eq!(fan_out(ports, id).await.unwrap(), Transition::Applied);

        let jobs = queue.jobs.lock().unwrap().clone();
        let queued: Vec<(u32, u32, &str)> = jobs.iter().map(|j| (j.image_index, j.row, j.url.as_str())).collect();
        assert_eq!(
            queued,
            [
                (0, 0, "https://img.example/a.jpg"),
                (1, 0, "https://img.example/b.png"),
                (2, 1, "https://img.example/c.webp")
            ]
        );
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Processing);
    }

    #[tokio::test]
    async fn a_duplicate_fan_out_queues_nothing() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        fan_out(ports(&table, &blobs, &queue), id).await.unwrap();

        let again = fan_out(ports(&table, &blobs, &queue), id).await.unwrap();
        assert_eq!(again, Transition::AlreadyDone);
        assert_eq!(queue.jobs.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_request_whose_csv_is_gone_fails_instead_of_waiting() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, None).await;

        let result = fan_out(ports(&table, &blobs, &queue), id).await;
        assert!(matches!(result, Err(FanOutError::Corrupt(..))));
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }
}
