//! The completion webhook: what it carries, and when a delivery that failed is tried again.
//!
//! A delivery is one send of the webhook, the notifier's first or a later one by the sweeper
//! (each made of a few quick tries, `adapters::http_webhook`). After a failed one the next is
//! due after 1, 2, 4, ... times the redelivery base (a minute in production), at most 60 times
//! it apart, `MAX_DELIVERIES` in all (over about 6 hours); then it is given up.

use std::time::Duration;

use serde::Serialize;

use crate::domain::request::RequestStatus;
use crate::domain::request_id::RequestId;

/// What a request's webhook receives once, when the request reaches its final state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookPayload {
    pub request_id: RequestId,
    pub status: RequestStatus,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Images without a result when the request was cancelled (0 unless `status` is `cancelled`).
    pub cancelled: u64,
    /// `null` when the request was failed before its output CSV was written.
    pub output_csv_url: Option<String>,
    /// The errors report, when images failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_csv_url: Option<String>,
    /// Why the request was failed without waiting for its images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// Deliveries of one webhook before it is given up, the first one included.
pub const MAX_DELIVERIES: u32 = 12;

/// When delivery number `delivered + 1` is due after `delivered` failed ones: `base`, doubling,
/// at most 60 times `base`; `None` once `MAX_DELIVERIES` have failed.
pub fn next_delivery_in(delivered: u32, base: Duration) -> Option<Duration> {
    (delivered < MAX_DELIVERIES).then(|| (base * (1 << (delivered.clamp(1, 7) - 1))).min(base * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_back_off_to_an_hour_and_stop() {
        let minute = Duration::from_secs(60);
        let minutes: Vec<Option<u64>> =
            (1..=MAX_DELIVERIES).map(|n| next_delivery_in(n, minute).map(|d| d.as_secs() / 60)).collect();
        let hour = Some(60);
        let expected = [Some(1), Some(2), Some(4), Some(8), Some(16), Some(32), hour, hour, hour, hour, hour, None];
        assert_eq!(minutes, expected);
    }
}
