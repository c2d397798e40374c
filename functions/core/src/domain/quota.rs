//! Limits per tenant: at most `max_open_images` images in requests that are not final, counted
//! on the tenant's item. An upload takes its images from the quota in the same write that records
//! the request; the write that makes the request final gives them back, so each request's images
//! are counted once and released once.

use serde::{Deserialize, Serialize};

/// `MAX_OPEN_IMAGES_PER_TENANT` when unset (template.yaml's `MaxOpenImagesPerTenant` default):
/// two of the largest requests a CSV in the bucket may make.
pub const DEFAULT_MAX_OPEN_IMAGES: u64 = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuota {
    pub max_open_images: u64,
}

impl TenantQuota {
    /// Whether `images` more fit when `open` are already open.
    pub fn admits(&self, open: u64, images: u64) -> bool {
        open.checked_add(images).is_some_and(|total| total <= self.max_open_images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fits_only_while_open_images_stay_within_the_quota() {
        let quota = TenantQuota { max_open_images: 100 };
        assert!(quota.admits(0, 100) && quota.admits(40, 60));
        assert!(!quota.admits(41, 60) && !quota.admits(0, 101) && !quota.admits(u64::MAX, 1));
    }
}
