//! Turns an uploaded image into the JPEG we store: quality 50, 4:2:0 (grayscale stays grayscale),
//! upright, no metadata but the ICC colour profile.
//!
//! The format is decided by magic bytes only: extensions and content types come from strangers.
//! Sizes are checked from the header before any pixel buffer exists, because a 1 KB file can
//! declare a 900-megapixel image. Decoding is `image` (pure Rust) except for JPEG, which goes
//! through libjpeg-turbo when it can (faster, and it reads CMYK/YCCK files that zune-jpeg gets
//! wrong); encoding is always libjpeg-turbo, which gives the same bytes as the Pillow-based seed.
//! JPEG inputs that allow it skip decoding altogether: their DCT coefficients are requantised
//! to the q50 tables, chroma halved to 4:2:0 and EXIF turns applied in the DCT domain
//! (`codec/requantize.rs`), faster and smaller than decode + encode.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::domain::worker_memory::WorkerMemory;
use turbojpeg::{Colorspace, PixelFormat, Subsamp};

mod requantize;

/// How much work one image may cost.
#[derive(Debug, Clone)]
pub struct CodecLimits {
    /// Width x height, from the header, above which the image is refused undecoded.
    pub max_pixels: u64,
    /// Bytes the decoder and our conversions may hold at once for one image (the estimate of
    /// [`decode_memory`]); the worker derives it from its memory (`domain::worker_memory`).
    pub max_alloc_bytes: u64,
}

impl Default for CodecLimits {
    /// 50 MP, and the decode limit of the worker's default settings (582 MiB).
    fn default() -> Self {
        let max_alloc_bytes =
            WorkerMemory::default().decode_limit().expect("the default settings leave memory to decode");
        Self { max_pixels: 50_000_000, max_alloc_bytes }
    }
}

/// A test-only fault: an input whose bytes end with the marker makes the codec panic, as a
/// decoder bug would, on the thread that decodes it. The worker reads the marker from
/// CODEC_PANIC_MARKER, which only the test harness sets (through infra/local.py): never set in
/// a deployment. Unset (the default), it does nothing.
#[derive(Debug, Clone, Default)]
pub struct PanicMarker(Option<std::sync::Arc<[u8]>>);

impl PanicMarker {
    /// An empty marker is none.
    pub fn new(marker: &str) -> Self {
        Self((!marker.is_empty()).then(|| marker.as_bytes().into()))
    }

    /// Panics when `input` ends with the marker.
    pub fn panic_if_marked(&self, input: &[u8]) {
        if let Some(marker) = &self.0
            && input.ends_with(marker)
        {
            panic!("test fault: the input ends with CODEC_PANIC_MARKER");
        }
    }
}

/// The seed service's quality; with 4:2:0 our output is byte-identical to its Pillow output.
pub const JPEG_QUALITY: i32 = 50;

/// libjpeg-turbo's own advice against progressive JPEGs built to make decoding take minutes.
const MAX_JPEG_SCANS: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
    Tiff,
}

impl InputFormat {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::WebP => "webp",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Gif => ImageFormat::Gif,
            Self::WebP => ImageFormat::WebP,
            Self::Bmp => ImageFormat::Bmp,
            Self::Tiff => ImageFormat::Tiff,
        }
    }
}

/// The stored JPEG and what callers record about it.
pub struct Compressed {
    pub jpeg: Vec<u8>,
    /// Dimensions after EXIF orientation was applied, i.e. of `jpeg`.
    pub width: u32,
    pub height: u32,
    pub input_format: InputFormat,
    /// Re-encoding a JPEG input gave no smaller file, so `jpeg` is the input itself with its
    /// metadata segments removed (see [`compress`]); reported as [`NO_GAIN`].
    pub kept_original: bool,
    /// How `jpeg` was made.
    pub path: CodecPath,
    pub timings: CodecTimings,
}

/// Where the codec's time went, for the per-stage logs and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodecTimings {
    /// Header checks and decoding: to pixels (decode + encode), or entropy decoding of the
    /// DCT coefficients (requantisation).
    pub decode: Duration,
    /// Encoding: from pixels, or rescaling the coefficients and writing them.
    pub encode: Duration,
}

/// Which of the codec's paths produced the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecPath {
    /// A JPEG input's DCT coefficients requantised to the q50 tables, no decoding.
    Requantized,
    /// Decoded to pixels and encoded again.
    Reencoded,
    /// The input JPEG without its metadata (`kept_original`).
    KeptOriginal,
}

impl CodecPath {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Requantized => "requantized",
            Self::Reencoded => "reencoded",
            Self::KeptOriginal => "kept_original",
        }
    }
}

/// Stable code for "the input JPEG was kept: re-encoding would not have made it smaller".
pub const NO_GAIN: &str = "no_gain";

impl Compressed {
    /// [`NO_GAIN`] when the original was kept, for reports and logs; `None` for a re-encoded image.
    pub fn note(&self) -> Option<&'static str> {
        self.kept_original.then_some(NO_GAIN)
    }
}

/// Every variant is about the input: retrying the same bytes gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the data is not an image")]
    NotAnImage,
    #[error("{0} images are not supported")]
    UnsupportedFormat(String),
    #[error("the image has {pixels} pixels, more than the limit of {limit}")]
    TooManyPixels { pixels: u64, limit: u64 },
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

impl CodecError {
    /// Stable machine-readable code for reports and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnImage => "not_an_image",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::Decode(_) => "decode_error",
            Self::Encode(_) => "encode_error",
        }
    }
}

/// Decodes `input`, applies its EXIF orientation, flattens transparency onto white and encodes
/// it as JPEG quality 50: 4:2:0 colour, or a one-component JPEG when the input is grayscale.
///
/// - Inputs: JPEG (including CMYK and YCCK), PNG, GIF, WebP, BMP and TIFF. Of an animated GIF
///   or WebP, and of a multi-page TIFF, only the first frame (page) is kept.
/// - Refused: SVG, PDF, HEIC/AVIF, ICO, PSD and other image formats with `unsupported_format`;
///   HTML, text and anything else with `not_an_image`.
/// - Output never carries metadata (EXIF, GPS, XMP, IPTC, comments). It keeps the input's ICC
///   colour profile, so that its colours stay the input's ([`with_colour_profile`]).
/// - No gain, no change: when re-encoding a JPEG does not make it smaller than the input
///   stripped of its metadata, that stripped input is returned and `kept_original` is set (its
///   pixels are untouched). Not done when the input must be rotated (EXIF orientation other
///   than 1), is CMYK/YCCK, uses a coding browsers may not show (arithmetic, lossless,
///   hierarchical), has more than 500 scans, or has a damaged marker structure: then the
///   re-encoded output is returned even if it is larger.
///
/// - JPEG inputs in YCbCr (4:2:0, 4:2:2, 4:4:0, 4:4:4) or grayscale, Huffman-coded and quantised
///   no coarser than q50, are not decoded: their DCT coefficients are requantised to the q50
///   tables, chroma finer than 4:2:0 is halved in the DCT domain, the EXIF orientation is
///   applied to the blocks, and the result is written with optimised Huffman tables
///   ([`CodecPath::Requantized`]). Same tables, subsampling and quality as decode + encode,
///   fewer bytes, faster (docs/performance.md). A mirrored axis must be a whole number of
///   blocks long (8 pixels) for the turn to be exact; otherwise, or on any other input or
///   trouble on that path, decode + encode.
///
/// Every error is about the input; `CodecError::code` gives the stable code to report.
pub fn compress(input: &[u8], limits: &CodecLimits) -> Result<Compressed, CodecError> {
    let input_format = sniff(input)?;
    if input_format == InputFormat::Jpeg
        && let Some(out) = compress_requantized(input, limits)
    {
        return Ok(out);
    }
    let started = Instant::now();
    let (pixels, orientation, profile) = decode(input, input_format, limits)?;
    let decoded = Instant::now();
    let (width, height) = pixels.dimensions();
    let jpeg = with_colour_profile(encode(&pixels)?, profile.as_deref(), matches!(pixels, Pixels::Gray(_)));
    drop(pixels);
    let timings = CodecTimings { decode: decoded - started, encode: decoded.elapsed() };
    if input_format == InputFormat::Jpeg
        && orientation == Orientation::NoTransforms
        && let Some(original) = strip_jpeg_metadata(input)
        && original.len() <= jpeg.len()
    {
        let path = CodecPath::KeptOriginal;
        return Ok(Compressed { jpeg: original, width, height, input_format, kept_original: true, path, timings });
    }
    let path = CodecPath::Reencoded;
    Ok(Compressed { jpeg, width, height, input_format, kept_original: false, path, timings })
}

/// The requantisation path, `None` when it does not apply (or fails: decode + encode then
/// gives the result or the error). Refused early, before libjpeg sees the data: files over the
/// limits, and what `strip_jpeg_metadata` would not hand on (damaged marker structure,
/// arithmetic/lossless/hierarchical coding, more than `MAX_JPEG_SCANS` scans).
fn compress_requantized(input: &[u8], limits: &CodecLimits) -> Option<Compressed> {
    let started = Instant::now();
    let mut image_limits = Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(input), ImageFormat::Jpeg);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().ok()?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().ok()?;
    let profile = decoder.icc_profile().ok()?;
    let gray = decoder.color_type() == image::ColorType::L8;
    check_size(width, height, decoded_bytes(&decoder, InputFormat::Jpeg), orientation, limits).ok()?;
    drop(decoder);
    let original = strip_jpeg_metadata(input)?;
    let requantizing = Instant::now();
    let out = requantize::requantize(&original, JPEG_QUALITY, orientation.to_exif(), limits.max_alloc_bytes).ok()??;
    let requantized = requantizing.elapsed();
    // Both parsers read the same SOF marker; if they disagree our size check is worthless.
    let upright = if turns(orientation) { (height, width) } else { (width, height) };
    if (out.width, out.height) != upright {
        return None;
    }
    let (width, height) = upright;
    let jpeg = with_colour_profile(out.jpeg, profile.as_deref(), gray);
    let input_format = InputFormat::Jpeg;
    // The header checks count as decoding, like the header read of decode + encode.
    let decode = (requantizing - started) + out.decode;
    let timings = CodecTimings { decode, encode: requantized.saturating_sub(out.decode) };
    Some(if orientation == Orientation::NoTransforms && original.len() <= jpeg.len() {
        let path = CodecPath::KeptOriginal;
        Compressed { jpeg: original, width, height, input_format, kept_original: true, path, timings }
    } else {
        let path = CodecPath::Requantized;
        Compressed { jpeg, width, height, input_format, kept_original: false, path, timings }
    })
}

/// Names the format from its first bytes. Formats we recognise but do not take are named in
/// the error so the user knows what to convert; anything else (HTML error pages, mostly) is
/// "not an image".
fn sniff(input: &[u8]) -> Result<InputFormat, CodecError> {
    let unsupported = |name: &str| Err(CodecError::UnsupportedFormat(name.to_owned()));
    match image::guess_format(input) {
        Ok(ImageFormat::Jpeg) => return Ok(InputFormat::Jpeg),
        Ok(ImageFormat::Png) => return Ok(InputFormat::Png),
        Ok(ImageFormat::Gif) => return Ok(InputFormat::Gif),
        Ok(ImageFormat::WebP) => return Ok(InputFormat::WebP),
        Ok(ImageFormat::Tiff) => return Ok(InputFormat::Tiff),
        // Two-byte signatures ("BM", "P1".."P7") also start ordinary text: check a bit more.
        Ok(ImageFormat::Bmp) if is_bmp(input) => return Ok(InputFormat::Bmp),
        Ok(ImageFormat::Bmp) => {}
        Ok(ImageFormat::Pnm) if !input.get(2).is_some_and(u8::is_ascii_whitespace) => {}
        Ok(other) => return unsupported(&format!("{other:?}").to_uppercase()),
        Err(_) => {}
    }
    if input.starts_with(b"%PDF") {
        return unsupported("PDF");
    }
    if input.starts_with(b"8BPS") {
        return unsupported("PSD");
    }
    if input.get(4..8) == Some(b"ftyp") {
        match input.get(8..12) {
            Some(b"avif" | b"avis") => return unsupported("AVIF"),
            Some(brand) if HEIF_BRANDS.contains(&brand) => return unsupported("HEIC"),
            _ => {}
        }
    }
    if input.starts_with(b"\xFF\x0A") || input.starts_with(b"\0\0\0\x0CJXL \r\n\x87\n") {
        return unsupported("JPEG XL");
    }
    if input.starts_with(b"\xFF\x4F\xFF\x51") || input.starts_with(b"\0\0\0\x0CjP  \r\n\x87\n") {
        return unsupported("JPEG 2000");
    }
    if is_svg(input) {
        return unsupported("SVG");
    }
    Err(CodecError::NotAnImage)
}

const HEIF_BRANDS: [&[u8]; 8] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"];

/// "BM" followed, at byte 14, by one of the DIB header sizes that exist.
fn is_bmp(input: &[u8]) -> bool {
    let dib_size = input.get(14..18).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    matches!(dib_size, Some(12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// SVG text: `<svg ...`, or an XML prolog / doctype with an `<svg` element soon after it.
/// XML that is not SVG (feeds, error documents) stays "not an image".
fn is_svg(input: &[u8]) -> bool {
    let text = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
    let head = text[start..].iter().take(4096).map(u8::to_ascii_lowercase).collect::<Vec<u8>>();
    head.starts_with(b"<svg")
        || ((head.starts_with(b"<?xml") || head.starts_with(b"<!doctype svg")) && head.windows(4).any(|w| w == b"<svg"))
}

/// Opaque 8-bit pixels, ready for the encoder. Grayscale stays grayscale: a one-component JPEG
/// is smaller and looks the same.
enum Pixels {
    Rgb(RgbImage),
    Gray(GrayImage),
}

impl Pixels {
    fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Rgb(rgb) => rgb.dimensions(),
            Self::Gray(gray) => gray.dimensions(),
        }
    }

    /// Upright: the EXIF orientation applied (a turn makes a new buffer, see [`decode_memory`]).
    fn oriented(self, orientation: Orientation) -> Self {
        match self {
            Self::Rgb(rgb) => {
                let mut img = DynamicImage::ImageRgb8(rgb);
                img.apply_orientation(orientation);
                Self::Rgb(img.into_rgb8())
            }
            Self::Gray(gray) => {
                let mut img = DynamicImage::ImageLuma8(gray);
                img.apply_orientation(orientation);
                Self::Gray(img.into_luma8())
            }
        }
    }
}

/// Decodes to upright, opaque 8-bit pixels; also returns the orientation that was applied and
/// the input's ICC profile, if it has one.
fn decode(
    input: &[u8],
    format: InputFormat,
    limits: &CodecLimits,
) -> Result<(Pixels, Orientation, Option<Vec<u8>>), CodecError> {
    let mut image_limits = Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(input), format.image_format());
    reader.limits(image_limits);
    // Reads the header only: no pixel buffer exists until from_decoder below.
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    // JPEG, PNG (eXIf), WebP and TIFF have one. A broken EXIF block should not cost the user
    // the image: keep it as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Likewise a broken profile: the colours are then read as sRGB, as without one.
    let profile = decoder.icc_profile().unwrap_or(None);
    check_size(width, height, decoded_bytes(&decoder, format), orientation, limits)?;

    let turbo = match format {
        InputFormat::Jpeg => decode_jpeg_turbo(input, (width, height)),
        _ => None,
    };
    let img = match turbo {
        Some(img) => img,
        None => DynamicImage::from_decoder(decoder).map_err(decode_error)?,
    };
    // Flattened first, so that a turn copies 8-bit pixels, not 16-bit or RGBA ones.
    Ok((flatten(img)?.oriented(orientation), orientation, profile))
}

/// What the decoder will allocate. libjpeg-turbo writes a CMYK file's four samples per pixel
/// before `cmyk_to_rgb`, where `image` would write three: count four for every JPEG.
fn decoded_bytes(decoder: &impl ImageDecoder, format: InputFormat) -> u64 {
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    match format {
        InputFormat::Jpeg => decoder.total_bytes().max(pixels.saturating_mul(4)),
        _ => decoder.total_bytes(),
    }
}

/// The most bytes the codec holds at once for one image, at its largest step:
/// - decoding and flattening: the decoder's buffer (`decoded_bytes`) and the opaque 8-bit copy
///   `flatten` writes, counted at 3 bytes per pixel (gray needs 1: the rest then covers the
///   output JPEG);
/// - orienting, done on the 8-bit pixels: a turn (EXIF orientations 5 to 8) writes a copy of
///   them; flips and the half turn work in place;
/// - encoding: the 8-bit pixels and the output JPEG, smaller than the decoded buffer it follows.
fn decode_memory(decoded_bytes: u64, pixels: u64, orientation: Orientation) -> u64 {
    let flattened = pixels.saturating_mul(3);
    let flattening = decoded_bytes.saturating_add(flattened);
    let turning = if turns(orientation) { flattened.saturating_mul(2) } else { 0 };
    flattening.max(turning)
}

/// Orientations that swap width and height: `apply_orientation` writes a new image for them.
fn turns(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Refuses images that are too large before decoding them: too many pixels, or more memory
/// than the limit ([`decode_memory`]).
fn check_size(
    width: u32,
    height: u32,
    decoded_bytes: u64,
    orientation: Orientation,
    limits: &CodecLimits,
) -> Result<(), CodecError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(CodecError::TooManyPixels { pixels, limit: limits.max_pixels });
    }
    if pixels == 0 {
        return Err(CodecError::Decode("the image has no pixels".into()));
    }
    let needed = decode_memory(decoded_bytes, pixels, orientation);
    if needed > limits.max_alloc_bytes {
        return Err(CodecError::Decode(format!(
            "decoding needs about {} MiB, more than the limit of {} MiB",
            needed >> 20,
            limits.max_alloc_bytes >> 20
        )));
    }
    Ok(())
}

/// libjpeg-turbo decode. `None` means "let `image` try": libjpeg-turbo also fails on files
/// with mere warnings (extra bytes, truncation), which zune-jpeg may still decode.
fn decode_jpeg_turbo(input: &[u8], (width, height): (u32, u32)) -> Option<DynamicImage> {
    let mut decompressor = turbojpeg::Decompressor::new().ok()?;
    let header = decompressor.read_header(input).ok()?;
    // Both parsers read the same SOF marker; if they disagree our size check is worthless.
    if (header.width, header.height) != (width as usize, height as usize) {
        return None;
    }
    decompressor.set_scan_limit(MAX_JPEG_SCANS).ok()?;
    let format = match header.colorspace {
        Colorspace::CMYK | Colorspace::YCCK => PixelFormat::CMYK,
        Colorspace::Gray => PixelFormat::GRAY,
        _ => PixelFormat::RGB,
    };
    let pitch = header.width.checked_mul(format.size())?;
    let mut pixels = vec![0u8; pitch.checked_mul(header.height)?];
    let output =
        turbojpeg::Image { pixels: pixels.as_mut_slice(), width: header.width, pitch, height: header.height, format };
    decompressor.decompress(input, output).ok()?;
    match format {
        PixelFormat::GRAY => GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
        PixelFormat::CMYK => {
            let rgb = cmyk_to_rgb(&pixels, has_adobe_marker(input));
            RgbImage::from_raw(width, height, rgb).map(DynamicImage::ImageRgb8)
        }
        _ => RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
    }
}

/// Naive CMYK -> RGB without ICC, multiplicative: R = (255 - C) * (255 - K) / 255, as Pillow's
/// `cmyk2rgb` does. Unlike the additive 255 - min(255, C + K) it keeps dark colours apart
/// instead of clipping them all to black. Good enough for a preview-quality q50 output.
///
/// Photoshop, which writes nearly all CMYK JPEGs, stores the channels inverted (255 = no ink)
/// and says so with an Adobe APP14 marker; files without one store plain ink amounts. libjpeg
/// has already undone the YCC transform of YCCK files (Adobe transform 2), so both look alike
/// here. (Pillow inverts every CMYK JPEG, marker or not.)
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        // Each becomes the amount of white, 255 - ink.
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(|v| u32::from(if inverted { v } else { 255 - v }));
        rgb.extend([c, m, y].map(|v| ((v * k + 127) / 255) as u8));
    }
    rgb
}

/// Everything becomes opaque 8 bits per sample. Transparent pixels are blended onto white with
/// their alpha (their hidden colour is often black, which is what Pillow showed); 16-bit images
/// are scaled, not clipped (Pillow made 16-bit grayscale white). Palettes were already expanded
/// by the decoders.
fn flatten(img: DynamicImage) -> Result<Pixels, CodecError> {
    let (width, height) = (img.width(), img.height());
    let gray = |samples| GrayImage::from_raw(width, height, samples).map(Pixels::Gray);
    let rgb = |samples| RgbImage::from_raw(width, height, samples).map(Pixels::Rgb);
    let pixels = match img {
        DynamicImage::ImageLuma8(luma) => Some(Pixels::Gray(luma)),
        DynamicImage::ImageRgb8(rgb) => Some(Pixels::Rgb(rgb)),
        DynamicImage::ImageLuma16(_) => Some(Pixels::Gray(img.into_luma8())),
        DynamicImage::ImageLumaA8(la) => gray(over_white(la.as_raw(), 2, 255)),
        DynamicImage::ImageLumaA16(la) => gray(over_white(la.as_raw(), 2, 65535)),
        DynamicImage::ImageRgba8(rgba) => rgb(over_white(rgba.as_raw(), 4, 255)),
        // 16-bit or float alpha: blend at full precision, then round once to 8 bits.
        other if other.color().has_alpha() => rgb(over_white(other.into_rgba16().as_raw(), 4, 65535)),
        other => Some(Pixels::Rgb(other.into_rgb8())),
    };
    pixels.ok_or_else(|| CodecError::Decode("the decoded buffer has the wrong size".into()))
}

/// Blends interleaved samples (colour channels, then alpha; `max` is opaque) onto white.
fn over_white<S: Copy + Into<u64>>(samples: &[S], channels: usize, max: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() / channels * (channels - 1));
    for px in samples.chunks_exact(channels) {
        let alpha: u64 = px[channels - 1].into();
        for &value in &px[..channels - 1] {
            let blended = value.into() * alpha + max * (max - alpha); // 0..=max*max
            out.push(((blended * 255 + max * max / 2) / (max * max)) as u8);
        }
    }
    out
}

fn encode(pixels: &Pixels) -> Result<Vec<u8>, CodecError> {
    let (samples, format, subsamp) = match pixels {
        Pixels::Rgb(rgb) => (rgb.as_raw(), PixelFormat::RGB, Subsamp::Sub2x2),
        Pixels::Gray(gray) => (gray.as_raw(), PixelFormat::GRAY, Subsamp::Gray),
    };
    let (width, height) = pixels.dimensions();
    let (width, height) = (width as usize, height as usize);
    let image = turbojpeg::Image { pixels: samples.as_slice(), width, pitch: width * format.size(), height, format };
    let mut compressor = turbojpeg::Compressor::new().map_err(encode_error)?;
    compressor.set_quality(JPEG_QUALITY).map_err(encode_error)?;
    compressor.set_subsamp(subsamp).map_err(encode_error)?;
    compressor.compress_to_vec(image).map_err(encode_error)
}

fn decode_error(err: image::ImageError) -> CodecError {
    CodecError::Decode(err.to_string())
}

fn encode_error(err: turbojpeg::Error) -> CodecError {
    CodecError::Encode(err.to_string())
}

// JPEG marker segments. A JPEG is SOI, then segments `FF xx <u16 length incl. itself> payload`,
// each scan's entropy-coded data after its SOS segment (where a data byte FF is written FF 00
// and FF D0..D7 are restart markers), then EOI. Any number of FF fill bytes may precede a marker.

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

/// Walks the marker segments up to the first scan, looking for APP14 "Adobe".
fn has_adobe_marker(jpeg: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while let Some(segment) = jpeg.get(pos..pos + 4) {
        if segment[0] != 0xFF || segment[1] == SOS {
            return false; // not a marker, or start of scan: no more headers
        }
        if segment[1] == APP14 && jpeg.get(pos + 4..pos + 9) == Some(b"Adobe") {
            return true;
        }
        pos += 2 + usize::from(u16::from_be_bytes([segment[2], segment[3]]));
    }
    false
}

/// The JPEG with every metadata segment removed, losslessly: all APPn except JFIF (APP0),
/// ICC_PROFILE (APP2) and Adobe (APP14, it says how to read the colours) go, which takes EXIF
/// and XMP (APP1), IPTC (APP13), MPF and maker notes; COM goes; whatever follows EOI goes (phones
/// append further images there, with their own EXIF). The image data is copied unchanged.
///
/// `None` when the file is one we would rather not hand on: damaged marker structure, no EOI,
/// no scan or more than `MAX_JPEG_SCANS`, CMYK/YCCK (4 components), or any coding other than
/// Huffman baseline, extended or progressive (browsers lack arithmetic, lossless, hierarchical).
fn strip_jpeg_metadata(jpeg: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&[0xFF, SOI]) {
        return None;
    }
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend([0xFF, SOI]);
    let mut pos = 2;
    let mut scans = 0;
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        while jpeg.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        let marker = *jpeg.get(pos + 1)?;
        if marker == EOI {
            out.extend([0xFF, EOI]);
            return (scans > 0).then_some(out);
        }
        // 00, TEM, SOI or RST outside entropy-coded data: not a file we understand.
        if matches!(marker, 0x00 | 0x01 | SOI | 0xD0..=0xD7) {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([*jpeg.get(pos + 2)?, *jpeg.get(pos + 3)?]));
        let segment = jpeg.get(pos..(pos + 2).checked_add(length)?).filter(|_| length >= 2)?;
        let payload = &segment[4..];
        match marker {
            // SOF0..2: Huffman baseline, extended, progressive; 1 (gray) or 3 components.
            0xC0..=0xC2 if matches!(payload.get(5), Some(1 | 3)) => {}
            // Other SOFn, DAC (arithmetic conditioning), JPG extensions, hierarchical (DHP, EXP).
            0xC0..=0xCF | 0xDE | 0xDF if marker != 0xC4 => return None,
            _ => {}
        }
        if keep_segment(marker, payload) {
            out.extend_from_slice(segment);
        }
        pos += segment.len();
        if marker == SOS {
            scans += 1;
            if scans > MAX_JPEG_SCANS {
                return None;
            }
            let data_len = entropy_coded_len(&jpeg[pos..])?;
            out.extend_from_slice(&jpeg[pos..pos + data_len]);
            pos += data_len;
        }
    }
}

fn keep_segment(marker: u8, payload: &[u8]) -> bool {
    match marker {
        APP0 => payload.starts_with(b"JFIF\0"),
        APP2 => payload.starts_with(b"ICC_PROFILE\0"),
        APP14 => payload.starts_with(b"Adobe"),
        0xE0..=0xEF | COM => false,
        _ => true,
    }
}

/// `jpeg` (ours, starting SOI, APP0 JFIF) with `profile` after its JFIF segment, so that the
/// output's colours are the input's: an Adobe RGB or Display P3 photo read as sRGB looks duller
/// and shifted. Kept rather than converted to sRGB: it costs 0.6-9 KB and no time, and is exact
/// in every colour-managed viewer (measured in docs/performance.md, "ICC profiles"). Only a
/// profile of the output's colour space is kept: a CMYK file's profile does not describe the RGB
/// we make of it, nor an RGB profile a grayscale output.
///
/// An ICC profile is split over APP2 segments of at most 65,519 bytes of profile each, every one
/// with the header "ICC_PROFILE\0", its sequence number from 1 and the count (ICC.1, B.4).
fn with_colour_profile(jpeg: Vec<u8>, profile: Option<&[u8]>, gray: bool) -> Vec<u8> {
    const HEADER: &[u8] = b"ICC_PROFILE\0";
    const MAX_CHUNK: usize = 65_533 - HEADER.len() - 2;
    let space: &[u8] = if gray { b"GRAY" } else { b"RGB " };
    let Some(profile) = profile.filter(|profile| profile.get(16..20) == Some(space)) else {
        return jpeg;
    };
    let chunks = profile.chunks(MAX_CHUNK);
    let Ok(count) = u8::try_from(chunks.len()) else {
        return jpeg; // over 16 MB: not a profile anyone writes
    };
    // After SOI and, when it is first, the JFIF segment (JFIF wants it right after SOI).
    let mut at = 2;
    if jpeg.get(2..4) == Some(&[0xFF, APP0]) {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    let mut out = Vec::with_capacity(jpeg.len() + profile.len() + 18 * usize::from(count));
    out.extend_from_slice(&jpeg[..at]);
    for (sequence, chunk) in (1..=count).zip(chunks) {
        let length = (2 + HEADER.len() + 2 + chunk.len()) as u16;
        out.extend([0xFF, APP2]);
        out.extend(length.to_be_bytes());
        out.extend(HEADER);
        out.extend([sequence, count]);
        out.extend(chunk);
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// Length of the entropy-coded data at the start of `data`: up to the first marker that is
/// neither a stuffed FF 00 nor a restart marker. `None` if the data runs to the end of the file.
/// The FF bytes are found by `memchr`: a walk over every byte pair was 1.6% of the worker's CPU
/// samples on the pipeline benchmark's originals, 1.8% of the instructions on the 18 MP
/// progressive elephants (16 MB of scans; callgrind, docs/performance.md).
fn entropy_coded_len(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr(0xFF, &data[from..])?;
        match data.get(at + 1)? {
            0x00 | 0xD0..=0xD7 => from = at + 2,
            _ => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests;
