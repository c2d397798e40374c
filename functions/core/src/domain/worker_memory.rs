//! How one worker's memory is shared out, and so how much the codec may allocate per image.
//!
//! Lambda stops a function whose process outgrows its `MemorySize`, and with it every image
//! of the batch. What the process holds at once is: itself (runtime, SDK clients, TLS, the
//! allocator's slack), the download of each message handled at once (up to `MAX_IMAGE_BYTES`
//! each; the image being decoded is one of them, and a message holds its output in place of its
//! download), the free memory the allocator keeps for the next image instead of giving it back
//! (glibc's `trim_threshold`, set in the worker's `GLIBC_TUNABLES`), and what the codec
//! allocates for each image it decodes. The codec gets the rest:
//!
//! ```text
//! decode limit = (function memory - WORKER_CONCURRENCY x MAX_IMAGE_BYTES - PROCESS_BASELINE - KEPT_FREE) / CODEC_SLOTS
//!              = (1024 MiB - 10 x 25 MiB - 64 MiB - 128 MiB) / 1 = 582 MiB with the defaults
//! ```
//!
//! The codec refuses an image whose estimate is over it (`codec::CodecLimits::max_alloc_bytes`).
//! docs/performance.md has the measured peak of the worst image the defaults allow.

/// `MemorySize` in template.yaml, for when `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` is unset (Lambda
/// always sets it; a local run of the binary may not).
pub const DEFAULT_FUNCTION_MEMORY_MB: u64 = 1024;

/// What the worker process holds besides downloads and decoding: the runtime, the SDK and HTTP
/// clients, TLS, the allocator's slack. A release worker that has handled a batch of ten
/// photos holds about 55 MB (docs/performance.md); this leaves a little over that.
pub const PROCESS_BASELINE_BYTES: u64 = 64 << 20;

/// Below this a decode limit is a misconfiguration, not a limit: it would refuse an ordinary
/// 10 MP photo (about 6 bytes per pixel decoded and flattened).
pub const MIN_DECODE_BYTES: u64 = 64 << 20;

const MIB: u64 = 1 << 20;

/// The worker's `glibc.malloc.trim_threshold` in template.yaml: free memory at the top of the
/// heap up to this much is kept for the next image (its pages stay faulted in) rather than
/// given back to the kernel, so the process may hold it on top of everything else.
pub const DEFAULT_KEPT_FREE_BYTES: u64 = 128 << 20;

/// The free memory glibc keeps, from a `GLIBC_TUNABLES` value: its `glibc.malloc.trim_threshold`,
/// or 0 when it sets none (glibc's own threshold then moves with its mmap threshold, at most
/// 64 MiB, within `PROCESS_BASELINE_BYTES`'s slack).
pub fn kept_free_bytes(glibc_tunables: &str) -> u64 {
    glibc_tunables
        .split(':')
        .filter_map(|tunable| tunable.split_once('='))
        .find(|(name, _)| name.trim() == "glibc.malloc.trim_threshold")
        .and_then(|(_, value)| parse_size(value.trim()))
        .unwrap_or(0)
}

/// A tunable's number as glibc reads it: decimal, or hexadecimal after `0x`.
fn parse_size(value: &str) -> Option<u64> {
    match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// What a worker's memory must hold, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerMemory {
    /// The function's memory in MB (Lambda's MB: 2^20 bytes), `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub function_mb: u64,
    /// Messages of a batch handled at once, each holding one download (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// The largest download (`MAX_IMAGE_BYTES`).
    pub max_image_bytes: u64,
    /// Images decoded at once, each up to the decode limit (`CODEC_SLOTS`).
    pub codec_slots: usize,
    /// Free memory the allocator keeps rather than gives back (`kept_free_bytes`).
    pub kept_free_bytes: u64,
}

impl Default for WorkerMemory {
    /// The worker's defaults: 1024 MB, 10 messages at once, 25 MiB downloads, one codec slot,
    /// 128 MiB kept free.
    fn default() -> Self {
        Self {
            function_mb: DEFAULT_FUNCTION_MEMORY_MB,
            concurrency: 10,
            max_image_bytes: 25 * MIB,
            codec_slots: 1,
            kept_free_bytes: DEFAULT_KEPT_FREE_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{function_mb} MB cannot hold {concurrency} downloads of {max_image_bytes} bytes, the process ({} MiB), \
     {kept_free_bytes} bytes kept free and {codec_slots} decode(s) of at least {} MiB: lower WORKER_CONCURRENCY or \
     MAX_IMAGE_BYTES, or give the function more memory",
    PROCESS_BASELINE_BYTES / MIB,
    MIN_DECODE_BYTES / MIB
)]
pub struct MemoryTooSmall {
    pub function_mb: u64,
    pub concurrency: usize,
    pub max_image_bytes: u64,
    pub codec_slots: usize,
    pub kept_free_bytes: u64,
}

impl WorkerMemory {
    /// Bytes the codec may allocate for one image: what is left of the function's memory once
    /// the process, every download of the batch and the memory kept free are counted, shared
    /// between the codec slots.
    pub fn decode_limit(&self) -> Result<u64, MemoryTooSmall> {
        let too_small = MemoryTooSmall {
            function_mb: self.function_mb,
            concurrency: self.concurrency,
            max_image_bytes: self.max_image_bytes,
            codec_slots: self.codec_slots,
            kept_free_bytes: self.kept_free_bytes,
        };
        let downloads = (self.concurrency.max(1) as u64).saturating_mul(self.max_image_bytes);
        let left = self
            .function_mb
            .saturating_mul(MIB)
            .checked_sub(downloads.saturating_add(PROCESS_BASELINE_BYTES).saturating_add(self.kept_free_bytes))
            .ok_or(too_small.clone())?;
        let per_slot = left / self.codec_slots.max(1) as u64;
        if per_slot < MIN_DECODE_BYTES {
            return Err(too_small);
        }
        Ok(per_slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_leave_582_mib_to_decode() {
        assert_eq!(WorkerMemory::default().decode_limit(), Ok(582 * MIB));
    }

    #[test]
    fn the_memory_glibc_keeps_is_its_trim_threshold() {
        let template =
            "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728";
        assert_eq!(kept_free_bytes(template), DEFAULT_KEPT_FREE_BYTES);
        assert_eq!(kept_free_bytes("glibc.malloc.trim_threshold=0x1000000"), 16 * MIB);
        for none in ["", "glibc.malloc.arena_max=1", "glibc.malloc.trim_threshold=lots"] {
            assert_eq!(kept_free_bytes(none), 0, "{none:?}");
        }
        let kept_nothing = WorkerMemory { kept_free_bytes: 0, ..WorkerMemory::default() };
        assert_eq!(kept_nothing.decode_limit(), Ok(710 * MIB));
    }

    #[test]
    fn every_download_of_the_batch_and_the_process_come_off_the_function_memory() {
        let memory = WorkerMemory {
            function_mb: 2048,
            concurrency: 4,
            max_image_bytes: 50 * MIB,
            codec_slots: 1,
            kept_free_bytes: 128 * MIB,
        };
        assert_eq!(memory.decode_limit(), Ok((2048 - 4 * 50 - 64 - 128) * MIB));
    }

    #[test]
    fn codec_slots_share_what_is_left() {
        let memory = WorkerMemory { codec_slots: 2, ..WorkerMemory::default() };
        assert_eq!(memory.decode_limit(), Ok(291 * MIB));
    }

    #[test]
    fn zero_concurrency_or_slots_count_as_one_as_the_worker_runs_them() {
        let zero = WorkerMemory { concurrency: 0, codec_slots: 0, ..WorkerMemory::default() };
        let one = WorkerMemory { concurrency: 1, codec_slots: 1, ..WorkerMemory::default() };
        assert_eq!(zero.decode_limit(), Ok((1024 - 25 - 64 - 128) * MIB));
        assert_eq!(zero.decode_limit(), one.decode_limit());
    }

    #[test]
    fn memory_that_leaves_too_little_to_decode_is_refused() {
        // 640 - 250 - 64 - 128 = 198 MiB is still enough; 448 - 250 - 64 - 128 = 6 MiB is not;
        // 384 is below zero.
        let fits = WorkerMemory { function_mb: 640, ..WorkerMemory::default() };
        assert_eq!(fits.decode_limit(), Ok(198 * MIB));
        for function_mb in [448, 384, 0] {
            let memory = WorkerMemory { function_mb, ..WorkerMemory::default() };
            let error = memory.decode_limit().expect_err("too small");
            assert!(error.to_string().contains("lower WORKER_CONCURRENCY"), "{error}");
        }
        let four_slots = WorkerMemory { function_mb: 640, codec_slots: 4, ..WorkerMemory::default() };
        assert!(four_slots.decode_limit().is_err(), "198 MiB shared by 4 slots is under the minimum");
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let memory = WorkerMemory {
            function_mb: u64::MAX,
            concurrency: usize::MAX,
            max_image_bytes: u64::MAX,
            codec_slots: 1,
            kept_free_bytes: u64::MAX,
        };
        assert!(memory.decode_limit().is_err());
    }
}
