//! One job per distinct URL of a request: catalogues repeat images (a brand's logo, a
//! placeholder, one photo for every colour), and each distinct URL is fetched, compressed and
//! stored once. The job carries every image (slot) that names its URL; each of them gets its
//! own result item, pointing to the one output object (or with the same failure), so the output
//! CSV keeps its order and slots and the status counts every slot.
//!
//! URLs are compared as `HttpUrl` holds them: parsed by the WHATWG rules, so the scheme and
//! host are lowercase and a default port is gone (`HTTP://Img.Example:80/a.jpg` is
//! `http://img.example/a.jpg`). Paths and queries are compared as written: servers may tell
//! their case apart.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::http_url::HttpUrl;
use crate::domain::request::ImageJob;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// The most results one write records: DynamoDB's transaction holds 100 actions, one of which is
/// the update of the request's counters.
pub const MAX_RESULTS_PER_WRITE: usize = 99;

/// The most images one job carries, so that its results fit one write and its standing one read
/// (BatchGetItem's 100 keys: its images and the request). A URL named more often gets a job per
/// this many of its images, each fetching it.
pub const MAX_IMAGES_PER_JOB: usize = MAX_RESULTS_PER_WRITE;

/// One image's place in its request: what its result item needs beside the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub image_index: u32,
    /// 0-based data row of the input CSV.
    pub row: u32,
}

/// One URL of a request to fetch, compress and store once, for every image that names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchJob {
    pub request_id: RequestId,
    pub tenant_id: TenantId,
    pub url: HttpUrl,
    /// In output order, never empty (`JobsMessage::read` refuses an empty one); the first names
    /// the output object and the job's log lines.
    pub images: Vec<Slot>,
}

impl FetchJob {
    /// The job of each image, in output order: what its result is recorded for.
    pub fn image_jobs(&self) -> impl Iterator<Item = ImageJob> + '_ {
        self.images.iter().map(|slot| ImageJob {
            request_id: self.request_id,
            tenant_id: self.tenant_id.clone(),
            image_index: slot.image_index,
            row: slot.row,
            url: self.url.clone(),
        })
    }

    /// Its first image, which names its output object and its log lines.
    pub fn first(&self) -> ImageJob {
        self.image_jobs().next().expect("a fetch job names at least one image")
    }
}

/// A job of one image (a message queued before jobs were grouped by URL, or written by hand).
impl From<ImageJob> for FetchJob {
    fn from(job: ImageJob) -> Self {
        let images = vec![Slot { image_index: job.image_index, row: job.row }];
        Self { request_id: job.request_id, tenant_id: job.tenant_id, url: job.url, images }
    }
}

/// The jobs of `images` (of one request, in output order): one per distinct URL, in the order of
/// each URL's first image, with at most [`MAX_IMAGES_PER_JOB`] images each.
pub fn fetch_jobs(images: impl IntoIterator<Item = ImageJob>) -> Vec<FetchJob> {
    let mut jobs: Vec<FetchJob> = Vec::new();
    // The job still taking images of each URL.
    let mut open: HashMap<String, usize> = HashMap::new();
    for image in images {
        let slot = Slot { image_index: image.image_index, row: image.row };
        match open.get(image.url.as_str()) {
            Some(&at) if jobs[at].images.len() < MAX_IMAGES_PER_JOB => jobs[at].images.push(slot),
            _ => {
                open.insert(image.url.as_str().to_owned(), jobs.len());
                jobs.push(FetchJob::from(image));
            }
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tenant;

    fn image(id: RequestId, image_index: u32, url: &str) -> ImageJob {
        let url = HttpUrl::parse(url).unwrap();
        ImageJob { request_id: id, tenant_id: tenant(), image_index, row: image_index / 2, url }
    }

    fn indexes(job: &FetchJob) -> Vec<u32> {
        job.images.iter().map(|slot| slot.image_index).collect()
    }

    #[test]
    fn a_url_named_by_several_images_is_one_job_carrying_them_all_in_order() {
        let id = RequestId::new_random();
        let images = [
            image(id, 0, "https://img.example/logo.png"),
            image(id, 1, "https://img.example/a.jpg"),
            image(id, 2, "https://img.example/logo.png"),
            image(id, 3, "https://img.example/b.jpg"),
            image(id, 4, "https://img.example/logo.png"),
        ];
        let jobs = fetch_jobs(images.clone());
        let urls: Vec<&str> = jobs.iter().map(|job| job.url.as_str()).collect();
        assert_eq!(urls, ["https://img.example/logo.png", "https://img.example/a.jpg", "https://img.example/b.jpg"]);
        assert_eq!(jobs.iter().map(indexes).collect::<Vec<_>>(), [vec![0, 2, 4], vec![1], vec![3]]);
        assert_eq!(jobs[0].images[1], Slot { image_index: 2, row: 1 }, "each image keeps its row");
        assert_eq!(jobs[0].image_jobs().collect::<Vec<_>>(), [&images[0], &images[2], &images[4]].map(Clone::clone));
        assert_eq!(jobs[0].first(), images[0]);
    }

    #[test]
    fn scheme_and_host_case_and_a_default_port_do_not_make_another_url() {
        let id = RequestId::new_random();
        let spellings = [
            "https://img.example/logo.png",
            "HTTPS://IMG.Example/logo.png",
            "https://img.example:443/logo.png",
            "http://img.example:80/logo.png",
            "http://img.example/logo.png",
        ];
        let jobs = fetch_jobs(spellings.iter().enumerate().map(|(i, url)| image(id, i as u32, url)));
        assert_eq!(jobs.iter().map(indexes).collect::<Vec<_>>(), [vec![0, 1, 2], vec![3, 4]], "http is not https");

        let told_apart =
            ["https://img.example/Logo.png", "https://img.example/logo.png?v=2", "https://img.example:8443/logo.png"];
        let jobs = fetch_jobs(told_apart.iter().enumerate().map(|(i, url)| image(id, i as u32, url)));
        assert_eq!(jobs.len(), 3, "path case, query and another port are other resources");
    }

    #[test]
    fn a_url_named_more_often_than_one_job_holds_gets_a_job_per_that_many_images() {
        let id = RequestId::new_random();
        let count = MAX_IMAGES_PER_JOB * 2 + 1;
        let jobs = fetch_jobs((0..count as u32).map(|i| image(id, i, "https://img.example/logo.png")));
        assert_eq!(
            jobs.iter().map(|job| job.images.len()).collect::<Vec<_>>(),
            [MAX_IMAGES_PER_JOB, MAX_IMAGES_PER_JOB, 1]
        );
        let all: Vec<u32> = jobs.iter().flat_map(indexes).collect();
        assert_eq!(all, (0..count as u32).collect::<Vec<_>>(), "every image once, in order");
    }

    #[test]
    fn a_batch_of_ten_of_the_largest_jobs_fits_one_sqs_call() {
        use crate::domain::csv_rules::MAX_URL_LENGTH_CEILING;
        use crate::domain::request::QueueMessage;
        let base = "https://img.example/";
        let url = HttpUrl::parse(&format!("{base}{}", "u".repeat(MAX_URL_LENGTH_CEILING - base.len()))).unwrap();
        let tenant: TenantId = "t".repeat(crate::domain::tenant::MAX_TENANT_ID_LENGTH).parse().unwrap();
        let images = vec![Slot { image_index: u32::MAX, row: u32::MAX }; MAX_IMAGES_PER_JOB];
        let fetch = FetchJob { request_id: RequestId::new_random(), tenant_id: tenant, url, images };
        let body = serde_json::to_string(&QueueMessage::Fetch { fetch }).unwrap();
        // As if JSON escaped every character of the URL; SendMessageBatch takes 256 KiB.
        let batch = 10 * (body.len() + MAX_URL_LENGTH_CEILING);
        println!("a batch of ten of the largest jobs: {batch} bytes");
        assert!(batch < 256 * 1024 * 85 / 100, "{batch} bytes");
    }

    #[test]
    fn a_job_of_one_image_carries_that_image() {
        let id = RequestId::new_random();
        let one = image(id, 7, "https://img.example/a.jpg");
        let job = FetchJob::from(one.clone());
        assert_eq!(job.image_jobs().collect::<Vec<_>>(), [one]);
    }
}
