//! The fan-out of an accepted request: one job per distinct URL on the queue, carrying every
//! image that names it (`domain::fetch_jobs`), then `processing`.
//! It runs off the upload's path, so a 10,000-image CSV is answered as fast as a small one.
//! A request of more than a chunk of images is split (`domain::fan_out_chunks`): the fan-out
//! writes each chunk's jobs to the bucket and queues one message per chunk, and each chunk's
//! invocation queues its own images' jobs.
//! Running any of it twice only queues duplicate jobs, which record nothing twice. A retry's
//! fan-out first carries over the successes of the request it retries and queues only the others.

use std::collections::HashSet;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt, stream};

use crate::domain::csv_rules::ValidatedCsv;
use crate::domain::errors::StoreError;
use crate::domain::fan_out_chunks::{FanOutChunk, chunks_of};
use crate::domain::fetch_jobs::{FetchJob, fetch_jobs};
use crate::domain::request::{ImageJob, RequestRecord, RequestStatus, Transition, image_jobs};
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
/// A request of more than `chunk_images` images gets its chunks queued instead of its jobs;
/// either way it is `processing` once its work is on the queue.
pub async fn fan_out(
    ports: FanOutPorts<'_>,
    request_id: RequestId,
    chunk_images: u32,
) -> Result<Transition, FanOutError> {
    let Some(request) = ports.requests.get(request_id).await? else {
        return Err(FanOutError::Corrupt(request_id, "no request item".into()));
    };
    if request.status != RequestStatus::Pending {
        return Ok(Transition::AlreadyDone);
    }
    let csv = read_csv(&ports, &request).await?;
    let carried = match request.retry_of {
        Some(first) => carry_over_successes(ports.results, ports.carry, &request, first).await?,
        None => HashSet::new(),
    };
    let mut images = image_jobs(&request, &csv);
    images.retain(|image| !carried.contains(&image.image_index));
    let jobs = fetch_jobs(images);
    let chunks = chunks_of(request_id, request.total, chunk_images);
    if chunks.is_empty() {
        ports.queue.enqueue(&jobs).await?;
    } else {
        // Every chunk's jobs are stored before any chunk is queued: a chunk never looks for jobs
        // that are not there yet. A fan-out run again writes the same jobs again.
        let writes: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                write_chunk_jobs(&ports, &request, chunk, jobs.iter().filter(|job| chunk.holds(job)).collect())
            })
            .collect();
        stream::iter(writes).buffer_unordered(PARALLEL_WRITES).try_collect::<()>().await?;
        ports.queue.enqueue_chunks(&chunks).await?;
    }
    Ok(ports.lifecycle.mark_processing(request_id, Utc::now()).await?)
}

/// Chunk files written at once by a fan-out.
const PARALLEL_WRITES: usize = 8;

async fn write_chunk_jobs(
    ports: &FanOutPorts<'_>,
    request: &RequestRecord,
    chunk: &FanOutChunk,
    jobs: Vec<&FetchJob>,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&jobs).expect("jobs are plain data that always serialise");
    ports.blobs.put(&chunk.jobs_key(&request.tenant_id), body, "application/json").await
}

/// Queues the jobs of one chunk of a large request, as its fan-out stored them. `AlreadyDone`
/// when the request is final (failed, or swept): its images need no jobs.
pub async fn fan_out_chunk(ports: FanOutPorts<'_>, chunk: &FanOutChunk) -> Result<Transition, FanOutError> {
    let Some(request) = ports.requests.get(chunk.request_id).await? else {
        return Err(FanOutError::Corrupt(chunk.request_id, "no request item".into()));
    };
    if request.status.is_final() {
        return Ok(Transition::AlreadyDone);
    }
    let stored = ports.blobs.get(&chunk.jobs_key(&request.tenant_id)).await?;
    let jobs = match stored.map(|body| chunk_jobs(&body)) {
        Some(Ok(jobs)) => jobs,
        // Written by the fan-out before it queued this chunk: gone or unreadable, it is our own
        // data corrupted, and the request cannot end with all its images.
        unusable => {
            let why = match unusable {
                Some(Err(error)) => format!("the jobs of images from {} do not parse: {error}", chunk.first),
                _ => format!("the jobs of images from {} are missing", chunk.first),
            };
            let fail = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
            fail_request(fail, request.request_id, &why, Utc::now()).await?;
            return Err(FanOutError::Corrupt(request.request_id, why));
        }
    };
    ports.queue.enqueue(&jobs).await?;
    Ok(Transition::Applied)
}

/// A chunk's stored jobs; those a fan-out wrote before jobs were grouped by URL (one image each)
/// too, so that a chunk queued before a deployment still queues its images after it.
fn chunk_jobs(body: &[u8]) -> Result<Vec<FetchJob>, serde_json::Error> {
    serde_json::from_slice(body).or_else(|error| match serde_json::from_slice::<Vec<ImageJob>>(body) {
        Ok(images) => Ok(images.into_iter().map(FetchJob::from).collect()),
        Err(_) => Err(error),
    })
}

/// The request's stored CSV; one that is gone or unreadable fails the request.
async fn read_csv(ports: &FanOutPorts<'_>, request: &RequestRecord) -> Result<ValidatedCsv, FanOutError> {
    match read_stored_csv(ports.blobs, request).await {
        Ok(csv) => Ok(csv),
        Err(StoredCsvError::Store(error)) => Err(error.into()),
        Err(corrupt) => {
            let fail = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
            fail_request(fail, request.request_id, &corrupt.to_string(), Utc::now()).await?;
            Err(FanOutError::Corrupt(request.request_id, corrupt.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable};

    fn ports<'a>(table: &'a MemoryTable, blobs: &'a MemoryBlobs, queue: &'a MemoryQueue) -> FanOutPorts<'a> {
        FanOutPorts { requests: table, lifecycle: table, blobs, queue, results: table, carry: table }
    }
    use crate::ports::CreateRequest;
    use crate::test_support::{NO_QUOTA, tenant};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    /// More than the 3 images of `CSV`: one invocation queues them all.
    const CHUNK: u32 = 1_000;

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
        assert_eq!(fan_out(ports, id, CHUNK).await.unwrap(), Transition::Applied);

        let jobs = queue.queued_images();
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
    async fn a_url_named_by_several_images_is_one_job_even_across_chunks() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let csv = "S. No.,Product Name,Input Image Urls\n\
            1,Shirt,\"https://img.example/logo.png, https://img.example/a.jpg\"\n\
            2,Shoe,\"HTTPS://IMG.example/logo.png, https://img.example/b.jpg\"\n";
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, tenant(), 4, None, Utc::now());
        blobs.put(&request.input_csv_key, csv.into(), "text/csv").await.unwrap();
        table.create(&request, &NO_QUOTA).await.unwrap();
        let ports = || ports(&table, &blobs, &queue);

        // In chunks of 2 images: the logo's second image is in the second chunk.
        fan_out(ports(), id, 2).await.unwrap();
        let chunks = queue.chunks.lock().unwrap().clone();
        for chunk in chunks {
            fan_out_chunk(ports(), &chunk).await.unwrap();
        }
        let jobs = queue.jobs.lock().unwrap().clone();
        let queued: Vec<(&str, Vec<u32>)> = jobs
            .iter()
            .map(|job| (job.url.as_str(), job.images.iter().map(|slot| slot.image_index).collect()))
            .collect();
        assert_eq!(
            queued,
            [
                ("https://img.example/logo.png", vec![0, 2]),
                ("https://img.example/a.jpg", vec![1]),
                ("https://img.example/b.jpg", vec![3])
            ]
        );
    }

    #[tokio::test]
    async fn a_duplicate_fan_out_queues_nothing() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        fan_out(ports(&table, &blobs, &queue), id, CHUNK).await.unwrap();

        let again = fan_out(ports(&table, &blobs, &queue), id, CHUNK).await.unwrap();
        assert_eq!(again, Transition::AlreadyDone);
        assert_eq!(queue.jobs.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_request_whose_csv_is_gone_fails_instead_of_waiting() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, None).await;

        let result = fan_out(ports(&table, &blobs, &queue), id, CHUNK).await;
        assert!(matches!(result, Err(FanOutError::Corrupt(..))));
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }

    #[tokio::test]
    async fn a_large_request_is_queued_in_chunks_each_queueing_its_own_images() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        let ports = || ports(&table, &blobs, &queue);

        assert_eq!(fan_out(ports(), id, 2).await.unwrap(), Transition::Applied);
        let chunks = queue.chunks.lock().unwrap().clone();
        let ranges: Vec<(u32, u32)> = chunks.iter().map(|chunk| (chunk.first, chunk.count)).collect();
        assert_eq!(ranges, [(0, 2), (2, 1)]);
        assert!(queue.jobs.lock().unwrap().is_empty(), "the fan-out itself queues no job");
        assert!(blobs.objects.lock().unwrap().contains_key(&chunks[1].jobs_key(&tenant())), "each chunk's jobs stored");
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Processing);

        // The last chunk first, and the first one twice (SQS may do both).
        for chunk in [&chunks[1], &chunks[0], &chunks[0]] {
            assert_eq!(fan_out_chunk(ports(), chunk).await.unwrap(), Transition::Applied);
        }
        let queued: Vec<u32> = queue.queued_images().iter().map(|job| job.image_index).collect();
        assert_eq!(queued, [2, 0, 1, 0, 1], "each chunk its own images; a duplicate chunk duplicate jobs");
        assert_eq!(fan_out(ports(), id, 2).await.unwrap(), Transition::AlreadyDone, "chunks are queued once");
        assert_eq!(queue.chunks.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_chunk_whose_jobs_were_stored_one_per_image_before_a_deployment_queues_them() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        let ports = || ports(&table, &blobs, &queue);
        fan_out(ports(), id, 2).await.unwrap();
        let chunk = queue.chunks.lock().unwrap()[0];
        let request = table.get(id).await.unwrap().unwrap();
        let csv = ValidatedCsv::parse(CSV.as_bytes(), &crate::domain::csv_rules::CsvLimits::default()).unwrap();
        let images: Vec<ImageJob> = image_jobs(&request, &csv).into_iter().take(2).collect();
        blobs.put(&chunk.jobs_key(&tenant()), serde_json::to_vec(&images).unwrap(), "application/json").await.unwrap();

        assert_eq!(fan_out_chunk(ports(), &chunk).await.unwrap(), Transition::Applied);
        assert_eq!(queue.queued_images(), images);
    }

    #[tokio::test]
    async fn a_chunk_of_a_final_request_queues_nothing() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        let ports = || ports(&table, &blobs, &queue);
        fan_out(ports(), id, 2).await.unwrap();
        let request = table.get(id).await.unwrap().unwrap();
        let ending = crate::domain::request::FinalState::failed(&request, "test", Utc::now());
        table.finish(id, &ending, Utc::now()).await.unwrap();

        let chunk = queue.chunks.lock().unwrap()[0];
        assert_eq!(fan_out_chunk(ports(), &chunk).await.unwrap(), Transition::AlreadyDone);
        assert!(queue.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_chunk_whose_jobs_are_gone_fails_its_request() {
        let (table, blobs, queue) = (MemoryTable::default(), MemoryBlobs::default(), MemoryQueue::default());
        let id = accepted(&table, &blobs, Some(CSV)).await;
        let ports = || ports(&table, &blobs, &queue);
        fan_out(ports(), id, 2).await.unwrap();

        let chunk = queue.chunks.lock().unwrap()[0];
        blobs.objects.lock().unwrap().remove(&chunk.jobs_key(&tenant()));
        assert!(matches!(fan_out_chunk(ports(), &chunk).await, Err(FanOutError::Corrupt(..))));
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
        assert!(queue.jobs.lock().unwrap().is_empty());
    }
}
