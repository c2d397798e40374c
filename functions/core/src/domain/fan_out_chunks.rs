//! How a large request's fan-out is split: instead of one invocation queueing every image job
//! (100,000 jobs are 10,000 SendMessageBatch calls), the fan-out reads the CSV once, writes each
//! range of images' jobs to the bucket and queues one chunk message per range; each chunk's
//! invocation reads its own jobs (a few hundred KB, not the whole CSV: ten chunks in one batch
//! would otherwise parse a 100 MB CSV ten times at once) and queues them. A chunk delivered
//! twice queues its jobs twice, which record nothing twice.

use serde::{Deserialize, Serialize};

use crate::domain::fetch_jobs::FetchJob;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// Images whose jobs one invocation queues, by default: 200 SendMessageBatch calls, a few
/// seconds, well inside the worker's timeout. FAN_OUT_CHUNK_IMAGES sets it.
pub const DEFAULT_CHUNK_IMAGES: u32 = 2_000;

/// The images `first..first + count` of a request: the chunk queues the jobs whose first image
/// is one of them (a job also carries its URL's later images, wherever they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOutChunk {
    pub request_id: RequestId,
    pub first: u32,
    pub count: u32,
}

/// The chunks of a request of `total` images, `chunk_images` each (the last one shorter); none
/// when one invocation can queue them all.
pub fn chunks_of(request_id: RequestId, total: u64, chunk_images: u32) -> Vec<FanOutChunk> {
    let chunk_images = chunk_images.max(1);
    if total <= u64::from(chunk_images) {
        return Vec::new();
    }
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    (0..total)
        .step_by(chunk_images as usize)
        .map(|first| FanOutChunk { request_id, first, count: chunk_images.min(total - first) })
        .collect()
}

impl FanOutChunk {
    /// Where the fan-out writes this chunk's jobs (a JSON array), beside the request's CSV.
    pub fn jobs_key(&self, tenant: &TenantId) -> String {
        format!("tenants/{tenant}/requests/{}/chunks/{:08}.json", self.request_id, self.first)
    }

    /// Whether this chunk queues `job`: its first image is one of the chunk's.
    pub fn holds(&self, job: &FetchJob) -> bool {
        (self.first..self.first.saturating_add(self.count)).contains(&job.images[0].image_index)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
    use crate::domain::fetch_jobs::fetch_jobs;
    use crate::domain::request::{RequestRecord, image_jobs};
    use crate::test_support::tenant;

    #[test]
    fn a_request_that_fits_one_invocation_has_no_chunks() {
        let id = RequestId::new_random();
        assert!(chunks_of(id, 2_000, 2_000).is_empty());
        assert!(chunks_of(id, 0, 2_000).is_empty());
    }

    #[test]
    fn chunks_cover_every_image_once_in_order() {
        let id = RequestId::new_random();
        let chunks = chunks_of(id, 100_000, 2_000);
        assert_eq!(chunks.len(), 50);
        let chunks = chunks_of(id, 25, 10);
        let ranges: Vec<(u32, u32)> = chunks.iter().map(|c| (c.first, c.count)).collect();
        assert_eq!(ranges, [(0, 10), (10, 10), (20, 5)]);
    }

    #[test]
    fn each_chunks_jobs_live_beside_its_requests_csv() {
        let id = RequestId::new_random();
        let chunk = FanOutChunk { request_id: id, first: 4_000, count: 2_000 };
        assert_eq!(chunk.jobs_key(&tenant()), format!("tenants/acme/requests/{id}/chunks/00004000.json"));
    }

    #[test]
    fn every_job_of_the_request_is_held_by_one_chunk_in_order() {
        let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
        for row in 0..9 {
            // Each row's second image is the logo every row names.
            csv.push_str(&format!("{row},P{row},\"https://img.example/{row}a.jpg, https://img.example/logo.jpg\"\n"));
        }
        let csv = ValidatedCsv::parse(csv.as_bytes(), &CsvLimits::default()).unwrap();
        let request = RequestRecord::new(RequestId::new_random(), tenant(), 18, None, Utc::now());
        let jobs = fetch_jobs(image_jobs(&request, &csv));
        assert_eq!(jobs.len(), 10);
        let chunked: Vec<FetchJob> = chunks_of(request.request_id, 18, 4)
            .iter()
            .flat_map(|chunk| jobs.iter().filter(|job| chunk.holds(job)).cloned())
            .collect();
        assert_eq!(chunked, jobs);
    }
}
