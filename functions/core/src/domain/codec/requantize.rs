//! DCT-domain requantisation of a JPEG to the quality-[`JPEG_QUALITY`] tables (issue 5, item 1):
//! the quantised coefficients are read with libjpeg (a single scan in bands, a progressive
//! file whole), rescaled to the new tables, kept sparse and written as a baseline JPEG with
//! optimised Huffman tables. No IDCT, colour conversion, chroma resampling or FDCT, so it is
//! several times faster than decode + encode and, with the optimised tables, smaller. The C
//! side is `csrc/requantize.c`, linked against the libjpeg-turbo that turbojpeg-sys builds.
//!
//! It applies only where it gives what decode + encode gives: 8-bit grayscale or YCbCr (4:2:0,
//! or 4:2:2, 4:4:0 and 4:4:4, whose chroma is halved to 4:2:0 in the DCT domain by
//! `csrc/chroma_downsample.c`), Huffman-coded (baseline, extended or progressive), not CMYK,
//! YCCK or RGB (an Adobe marker may say YCbCr), every quantiser of the input no coarser than the
//! q50 one it maps to,
//! and an EXIF orientation that turns the blocks exactly (a mirrored axis a whole number of
//! blocks long; chroma half a block off is shifted in the DCT domain). The caller checks the
//! rest (marker structure, scan count).

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong};
use std::time::Duration;

#[cfg(doc)]
use super::JPEG_QUALITY;

const OK: c_int = 0;
const NOT_APPLICABLE: c_int = 1;
/// A part libjpeg does instead of our own code, for the tests to compare with (csrc's flags).
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(super) enum Libjpeg {
    /// Huffman statistics gathered by libjpeg's optimize_coding pass and the scan written by its
    /// encoder, instead of ours (csrc/scan_writer.c).
    Writer = 1,
    /// A progressive input read by jpeg_read_coefficients, instead of csrc/progressive_reader.c.
    Reader = 2,
}
/// csrc's IMGPIPE_RQ_EVERY_SCAN.
#[cfg(test)]
const EVERY_SCAN: c_int = 4;

unsafe extern "C" {
    fn imgpipe_requantize(
        input: *const u8,
        input_len: c_ulong,
        quality: c_int,
        orientation: c_int,
        max_memory: c_ulong,
        out: *mut *mut u8,
        out_len: *mut c_ulong,
        width: *mut c_uint,
        height: *mut c_uint,
        err: *mut c_char,
        err_len: c_int,
        flags: c_int,
        decode_ns: *mut u64,
    ) -> c_int;
    fn imgpipe_requantize_free(buffer: *mut u8);
    #[cfg(test)]
    fn imgpipe_requantize_coefficients(
        values: *const c_int,
        out: *mut c_int,
        count: c_int,
        q_in: c_int,
        q_out: c_int,
        kind: c_int,
        unread_lsb: c_int,
    ) -> c_int;
}

/// A requantised JPEG and its dimensions (upright: after the orientation).
pub(super) struct Requantized {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Time spent entropy-decoding the input's coefficients (the rest is the encode).
    pub decode: Duration,
}

/// `Ok(None)` when the input is not one requantisation applies to; `Err` with libjpeg's
/// message when libjpeg fails on it (callers fall back to decode + encode either way).
/// `orientation` is the input's EXIF orientation (1-8), applied to the output. `max_memory`
/// bounds the memory for the input's coefficients (a progressive input's, read whole) and the
/// output's blocks.
pub(super) fn requantize(
    input: &[u8],
    quality: i32,
    orientation: u8,
    max_memory: u64,
) -> Result<Option<Requantized>, String> {
    requantize_with(input, quality, orientation, max_memory, 0)
}

/// The same with libjpeg doing `part`: the output must be byte-identical.
#[cfg(test)]
pub(super) fn requantize_with_libjpeg(
    input: &[u8],
    quality: i32,
    orientation: u8,
    part: Libjpeg,
) -> Result<Option<Requantized>, String> {
    requantize_with(input, quality, orientation, 0, part as c_int)
}

/// Ours reading every scan of a progressive input, none skipped for the output's tables: what
/// libjpeg's reading gives, byte for byte.
#[cfg(test)]
pub(super) fn requantize_every_scan(
    input: &[u8],
    quality: i32,
    orientation: u8,
) -> Result<Option<Requantized>, String> {
    requantize_with(input, quality, orientation, 0, EVERY_SCAN)
}

/// A coefficient, for [`requantize_coefficients`].
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Coefficient {
    Ac,
    /// An AC coefficient whose last bit was not read (a progressive input's skipped scan).
    AcLastBitUnread,
    /// The DC coefficient of a block with an AC coefficient.
    Dc,
    /// The DC coefficient of a block whose AC coefficients are all 0: a flat block.
    DcOfFlatBlock,
    /// The DC coefficient of a block whose AC coefficients were read as 0, but not their last
    /// bits: not known to be flat.
    DcAcLastBitsUnread,
}

/// The rounding rule: each coefficient of quantiser `q_in` expressed on `q_out` through the path
/// a block takes.
#[cfg(test)]
pub(super) fn requantize_coefficients(values: &[i32], q_in: i32, q_out: i32, kind: Coefficient) -> Vec<i32> {
    let mut out = vec![0; values.len()];
    let count = c_int::try_from(values.len()).expect("a test's handful");
    use Coefficient::{Ac, AcLastBitUnread, Dc, DcAcLastBitsUnread, DcOfFlatBlock};
    let (c_kind, unread_lsb) = match kind {
        Ac => (0, false),
        AcLastBitUnread => (0, true),
        Dc => (1, false),
        DcOfFlatBlock => (2, false),
        DcAcLastBitsUnread => (2, true),
    };
    // SAFETY: both slices hold `count` values; the callee reads one and writes the other.
    let done = unsafe {
        imgpipe_requantize_coefficients(
            values.as_ptr(),
            out.as_mut_ptr(),
            count,
            q_in,
            q_out,
            c_kind,
            c_int::from(unread_lsb),
        )
    };
    assert_eq!(done, 1, "out of memory");
    out
}

fn requantize_with(
    input: &[u8],
    quality: i32,
    orientation: u8,
    max_memory: u64,
    flags: c_int,
) -> Result<Option<Requantized>, String> {
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut out_len: c_ulong = 0;
    let (mut width, mut height): (c_uint, c_uint) = (0, 0);
    let mut err = [0 as c_char; 200];
    let mut decode_ns = 0u64;
    let input_len = c_ulong::try_from(input.len()).map_err(|_| "input too large".to_owned())?;
    let max_memory = c_ulong::try_from(max_memory).unwrap_or(c_ulong::MAX).min(c_ulong::MAX / 2);
    // SAFETY: the input slice outlives the call and is only read; every out-pointer is to a
    // live local; err is writable for its length and NUL-terminated by the callee.
    let code = unsafe {
        imgpipe_requantize(
            input.as_ptr(),
            input_len,
            quality,
            c_int::from(orientation),
            max_memory,
            &mut out,
            &mut out_len,
            &mut width,
            &mut height,
            err.as_mut_ptr(),
            err.len() as c_int,
            flags,
            &mut decode_ns,
        )
    };
    match code {
        OK => {
            // SAFETY: on OK, `out` is a malloc'ed buffer of `out_len` bytes that we now own; it
            // is copied, then freed by the allocator that made it.
            let jpeg = unsafe {
                let jpeg = std::slice::from_raw_parts(out, out_len as usize).to_vec();
                imgpipe_requantize_free(out);
                jpeg
            };
            Ok(Some(Requantized { jpeg, width, height, decode: Duration::from_nanos(decode_ns) }))
        }
        NOT_APPLICABLE => Ok(None),
        _ => {
            // SAFETY: the callee always leaves a NUL-terminated string in `err`.
            let message = unsafe { CStr::from_ptr(err.as_ptr()) };
            Err(message.to_string_lossy().into_owned())
        }
    }
}
