//! One delivery of a message of the jobs queue: what it carries, whether it is the job's last
//! attempt, and how long to wait before the next one.
//!
//! The queue carries four kinds of message: the fan-out of an accepted request, one chunk of a
//! large request's fan-out, one URL's job (those three written by us, `QueueMessage`), and
//! S3's notification of CSVs dropped into the bucket. The same messages also arrive from the jobs' dead-letter queue once they were
//! delivered `maxReceiveCount` times without an answer.

use std::time::Duration;

use crate::domain::dropped_csv::{DroppedCsv, dropped_csvs_in};
use crate::domain::fan_out_chunks::FanOutChunk;
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::request::{ImageJob, QueueMessage};
use crate::domain::request_id::RequestId;

/// A message of the jobs queue, read.
#[derive(Debug, PartialEq, Eq)]
pub enum JobsMessage {
    FanOut(RequestId),
    FanOutChunk(FanOutChunk),
    /// One URL's job, for every image of its request that names it.
    Fetch(FetchJob),
    /// One image's job (queued before jobs were grouped by URL, or written by hand).
    Image(ImageJob),
    DroppedCsvs(Vec<DroppedCsv>),
    /// A body no one of ours wrote: it will never become readable, and names no image.
    Unreadable(String),
}

impl JobsMessage {
    pub fn read(body: &str) -> Self {
        match serde_json::from_str(body) {
            Ok(QueueMessage::Image(job)) => Self::Image(job),
            Ok(QueueMessage::Fetch { fetch }) if fetch.images.is_empty() => {
                Self::Unreadable("a job of no image".into())
            }
            Ok(QueueMessage::Fetch { fetch }) => Self::Fetch(fetch),
            Ok(QueueMessage::FanOut { fan_out }) => Self::FanOut(fan_out),
            Ok(QueueMessage::FanOutChunk { fan_out_chunk }) => Self::FanOutChunk(fan_out_chunk),
            Err(error) => match dropped_csvs_in(body) {
                Some(dropped) => Self::DroppedCsvs(dropped),
                None => Self::Unreadable(error.to_string()),
            },
        }
    }
}

/// How often the queue delivers a job, and how retries after a transient failure are spaced.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The queue's `maxReceiveCount`: the delivery with this count is the last one.
    pub max_receives: u32,
    /// First delay before retrying a transient failure; doubles per attempt up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Whether delivery number `receives` (1 for the first) is the last the queue makes: a
    /// transient failure is then recorded as the image's result rather than lost to the DLQ.
    pub fn is_last_attempt(&self, receives: u32) -> bool {
        receives >= self.max_receives
    }

    /// The wait before the attempt after delivery number `receives`.
    pub fn delay_after(&self, receives: u32) -> Duration {
        retry_delay(receives, self.base, self.cap)
    }
}

/// The time an image job needs for what is left of it, checked before each step so that a job
/// the Lambda would be stopped in the middle of is handed back instead: ten jobs of a batch start
/// at once and then wait for the one codec slot, so time left at the start says little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeReserves {
    /// The whole download, at most (FETCH_TIMEOUT_SECS).
    pub fetch: Duration,
    /// Decoding and encoding the largest image allowed.
    pub codec: Duration,
    /// Storing the output and recording the result: two SDK calls, each bounded by the SDK's
    /// operation timeout.
    pub store: Duration,
}

impl TimeReserves {
    pub fn to_start(&self) -> Duration {
        self.fetch + self.codec + self.store
    }

    pub fn to_decode(&self) -> Duration {
        self.codec + self.store
    }

    pub fn to_store(&self) -> Duration {
        self.store
    }

    /// Recording a result: the second of `store`'s two SDK calls.
    pub fn to_record(&self) -> Duration {
        self.store / 2
    }
}

/// How long a job waits before its next attempt after a transient failure on delivery
/// number `receives` (1 for the first): doubling from `base`, at most `cap`. Without it the
/// queue's visibility timeout, sized for crashed workers, would space retries minutes apart.
pub fn retry_delay(receives: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = receives.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fetch_jobs::Slot;
    use crate::domain::http_url::HttpUrl;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let (base, cap) = (Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=6).map(|n| retry_delay(n, base, cap).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_delay(u32::MAX, base, cap), cap);
    }

    #[test]
    fn the_delivery_with_the_queues_max_receive_count_is_the_last() {
        let policy = RetryPolicy { max_receives: 5, base: Duration::from_secs(10), cap: Duration::from_secs(120) };
        assert!(!policy.is_last_attempt(1) && !policy.is_last_attempt(4));
        assert!(policy.is_last_attempt(5) && policy.is_last_attempt(6));
        assert_eq!(policy.delay_after(2), Duration::from_secs(20));
    }

    #[test]
    fn messages_are_read_as_fan_outs_jobs_dropped_csvs_or_unreadable() {
        let id: RequestId = "6f1c1f7e-8a3e-4a47-9b7e-0d6b7b0f3a11".parse().unwrap();
        let job = ImageJob {
            tenant_id: crate::test_support::tenant(),
            request_id: id,
            image_index: 3,
            row: 1,
            url: HttpUrl::parse("https://a.example/x.png").unwrap(),
        };
        let job_body = serde_json::to_string(&QueueMessage::Image(job.clone())).unwrap();
        assert_eq!(JobsMessage::read(&job_body), JobsMessage::Image(job));
        assert_eq!(JobsMessage::read(&format!(r#"{{"fan_out":"{id}"}}"#)), JobsMessage::FanOut(id));
        assert_eq!(JobsMessage::read(r#"{"Event":"s3:TestEvent"}"#), JobsMessage::DroppedCsvs(vec![]));
        assert!(matches!(JobsMessage::read("{\"hello\": 1}"), JobsMessage::Unreadable(_)));
    }

    #[test]
    fn a_urls_job_is_read_with_its_images_and_one_naming_none_is_unreadable() {
        let id: RequestId = "6f1c1f7e-8a3e-4a47-9b7e-0d6b7b0f3a11".parse().unwrap();
        let url = HttpUrl::parse("https://a.example/logo.png").unwrap();
        let images = vec![Slot { image_index: 0, row: 0 }, Slot { image_index: 4, row: 2 }];
        let fetch = FetchJob { request_id: id, tenant_id: crate::test_support::tenant(), url, images };
        let body = serde_json::to_string(&QueueMessage::Fetch { fetch: fetch.clone() }).unwrap();
        assert_eq!(JobsMessage::read(&body), JobsMessage::Fetch(fetch.clone()));

        let none = QueueMessage::Fetch { fetch: FetchJob { images: Vec::new(), ..fetch } };
        assert!(matches!(JobsMessage::read(&serde_json::to_string(&none).unwrap()), JobsMessage::Unreadable(_)));
    }
}
