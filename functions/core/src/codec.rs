//! Turns an uploaded image into the JPEG we store: quality 50, 4:2:0, upright, no metadata.
//!
//! The format is decided by magic bytes only: extensions and content types come from strangers.
//! Sizes are checked from the header before any pixel buffer exists, because a 1 KB file can
//! declare a 900-megapixel image. Decoding is `image` (pure Rust) except for JPEG, which goes
//! through libjpeg-turbo when it can (faster, and it reads CMYK/YCCK files that zune-jpeg gets
//! wrong); encoding is always libjpeg-turbo, which gives the same bytes as the Pillow-based seed.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use turbojpeg::{Colorspace, PixelFormat, Subsamp};

/// How much work one image may cost.
#[derive(Debug, Clone)]
pub struct CodecLimits {
    /// Width x height, from the header, above which the image is refused undecoded.
    pub max_pixels: u64,
    /// Bytes the decoder and our conversions may allocate for one image.
    pub max_alloc_bytes: u64,
}

impl Default for CodecLimits {
    fn default() -> Self {
        Self { max_pixels: 50_000_000, max_alloc_bytes: 1 << 30 }
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
}

impl InputFormat {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Gif => ImageFormat::Gif,
            Self::WebP => ImageFormat::WebP,
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

/// Decodes `input` (JPEG, PNG, GIF or WebP; first frame of animations), applies its EXIF
/// orientation, flattens transparency onto white and encodes it as JPEG quality 50, 4:2:0.
///
/// Every error is about the input; `CodecError::code` gives the stable code to report.
pub fn compress(input: &[u8], limits: &CodecLimits) -> Result<Compressed, CodecError> {
    let input_format = sniff(input)?;
    let rgb = decode(input, input_format, limits)?;
    let jpeg = encode(&rgb)?;
    Ok(Compressed { jpeg, width: rgb.width(), height: rgb.height(), input_format })
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
        // Two-byte signatures ("BM", "P1".."P7") also start ordinary text: check a bit more.
        Ok(ImageFormat::Bmp) if !is_bmp(input) => {}
        Ok(ImageFormat::Pnm) if !input.get(2).is_some_and(u8::is_ascii_whitespace) => {}
        Ok(other) => return unsupported(&format!("{other:?}").to_uppercase()),
        Err(_) => {}
    }
    if input.starts_with(b"%PDF") {
        return unsupported("PDF");
    }
    if input.get(4..8) == Some(b"ftyp") && input.get(8..12).is_some_and(|brand| HEIF_BRANDS.contains(&brand)) {
        return unsupported("HEIC");
    }
    if is_svg(input) {
        return unsupported("SVG");
    }
    Err(CodecError::NotAnImage)
}

const HEIF_BRANDS: [&[u8]; 5] = [b"heic", b"heix", b"heim", b"heis", b"mif1"];

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

/// Decodes to upright, opaque 8-bit RGB.
fn decode(input: &[u8], format: InputFormat, limits: &CodecLimits) -> Result<RgbImage, CodecError> {
    let mut image_limits = Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(input), format.image_format());
    reader.limits(image_limits);
    // Reads the header only: no pixel buffer exists until from_decoder below.
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, decoder.total_bytes(), limits)?;
    // A broken EXIF block should not cost the user the image: keep it as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);

    let turbo = match format {
        InputFormat::Jpeg => decode_jpeg_turbo(input, (width, height)),
        _ => None,
    };
    let mut img = match turbo {
        Some(img) => img,
        None => DynamicImage::from_decoder(decoder).map_err(decode_error)?,
    };
    img.apply_orientation(orientation);
    Ok(flatten_to_rgb(img))
}

/// Refuses images that are too large before decoding them. `decoded_bytes` is what the decoder
/// will allocate; our RGB copy comes on top of it.
fn check_size(width: u32, height: u32, decoded_bytes: u64, limits: &CodecLimits) -> Result<(), CodecError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(CodecError::TooManyPixels { pixels, limit: limits.max_pixels });
    }
    if pixels == 0 {
        return Err(CodecError::Decode("the image has no pixels".into()));
    }
    let needed = decoded_bytes.saturating_add(pixels * 3);
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
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let format = if cmyk { PixelFormat::CMYK } else { PixelFormat::RGB };
    let pitch = header.width.checked_mul(format.size())?;
    let mut pixels = vec![0u8; pitch.checked_mul(header.height)?];
    let output =
        turbojpeg::Image { pixels: pixels.as_mut_slice(), width: header.width, pitch, height: header.height, format };
    decompressor.decompress(input, output).ok()?;
    if cmyk {
        pixels = cmyk_to_rgb(&pixels, has_adobe_marker(input));
    }
    RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
}

/// Naive CMYK -> RGB (no ICC; good enough for a preview-quality q50 output). Photoshop, which
/// writes nearly all CMYK JPEGs, stores the channels inverted and says so with an Adobe APP14
/// marker; Pillow reads such files the same way.
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(|v| u32::from(if inverted { v } else { 255 - v }));
        rgb.extend([c, m, y].map(|v| ((v * k + 127) / 255) as u8));
    }
    rgb
}

/// Walks the JPEG marker segments up to the first scan, looking for APP14 "Adobe".
fn has_adobe_marker(jpeg: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while let Some(segment) = jpeg.get(pos..pos + 4) {
        if segment[0] != 0xFF || segment[1] == 0xDA {
            return false; // not a marker, or start of scan: no more headers
        }
        if segment[1] == 0xEE && jpeg.get(pos + 4..pos + 9) == Some(b"Adobe") {
            return true;
        }
        pos += 2 + usize::from(u16::from_be_bytes([segment[2], segment[3]]));
    }
    false
}

/// Everything becomes opaque 8-bit RGB. Transparent pixels are blended onto white with their
/// alpha (their hidden RGB is often black, which is what Pillow showed); 16-bit images are
/// scaled, not clipped (Pillow made 16-bit grayscale white).
fn flatten_to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
    }
    let (width, height) = (img.width(), img.height());
    let mut out = RgbImage::new(width, height);
    if img.color().bytes_per_pixel() > 4 {
        // 16-bit (or float) alpha: blend at full precision, then round once to 8 bits.
        const MAX: u64 = 65535;
        for (dst, src) in out.pixels_mut().zip(img.into_rgba16().pixels()) {
            let a = u64::from(src[3]);
            for c in 0..3 {
                let v = u64::from(src[c]) * a + MAX * (MAX - a); // 0..=MAX*MAX
                dst[c] = ((v * 255 + MAX * MAX / 2) / (MAX * MAX)) as u8;
            }
        }
    } else {
        for (dst, src) in out.pixels_mut().zip(img.into_rgba8().pixels()) {
            let a = u32::from(src[3]);
            for c in 0..3 {
                dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
            }
        }
    }
    out
}

fn encode(rgb: &RgbImage) -> Result<Vec<u8>, CodecError> {
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let image =
        turbojpeg::Image { pixels: rgb.as_raw().as_slice(), width, pitch: width * 3, height, format: PixelFormat::RGB };
    let mut compressor = turbojpeg::Compressor::new().map_err(encode_error)?;
    compressor.set_quality(JPEG_QUALITY).map_err(encode_error)?;
    compressor.set_subsamp(Subsamp::Sub2x2).map_err(encode_error)?;
    compressor.compress_to_vec(image).map_err(encode_error)
}

fn decode_error(err: image::ImageError) -> CodecError {
    CodecError::Decode(err.to_string())
}

fn encode_error(err: turbojpeg::Error) -> CodecError {
    CodecError::Encode(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, Rgba, RgbaImage};

    fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("fixture encodes");
        out.into_inner()
    }

    fn jpeg_q(img: &RgbImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality).encode_image(img).expect("fixture encodes");
        out
    }

    fn run(input: &[u8]) -> Result<Compressed, CodecError> {
        compress(input, &CodecLimits::default())
    }

    /// Decodes our output, checking on the way that it is a JPEG.
    fn output_pixels(out: &Compressed) -> RgbImage {
        assert_eq!(image::guess_format(&out.jpeg).ok(), Some(ImageFormat::Jpeg));
        image::load_from_memory_with_format(&out.jpeg, ImageFormat::Jpeg).expect("output decodes").to_rgb8()
    }

    fn assert_near(actual: Rgb<u8>, expected: [u8; 3], tolerance: u8) {
        let close = actual.0.iter().zip(expected).all(|(&a, e)| a.abs_diff(e) <= tolerance);
        assert!(close, "got {:?}, expected {expected:?} +/- {tolerance}", actual.0);
    }

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]))
    }

    #[test]
    fn jpeg_in_gives_jpeg_out_with_same_dimensions() {
        let input = jpeg_q(&gradient(64, 48), 90);
        assert!(decode_jpeg_turbo(&input, (64, 48)).is_some(), "ordinary JPEGs take the libjpeg-turbo path");
        let out = run(&input).expect("compresses");
        assert_eq!((out.width, out.height, out.input_format), (64, 48, InputFormat::Jpeg));
        assert_eq!(output_pixels(&out).dimensions(), (64, 48));
    }

    #[test]
    fn transparent_pixels_with_hidden_black_come_out_white() {
        let img = RgbaImage::from_fn(32, 32, |x, _| if x < 16 { Rgba([0, 0, 0, 0]) } else { Rgba([0, 0, 255, 255]) });
        let out = run(&encoded(&img.into(), ImageFormat::Png)).expect("compresses");
        assert_eq!(out.input_format, InputFormat::Png);
        let px = output_pixels(&out);
        assert_near(*px.get_pixel(4, 16), [255, 255, 255], 6);
        assert_near(*px.get_pixel(28, 16), [0, 0, 255], 12);
    }

    #[test]
    fn half_transparent_red_over_white_is_pink() {
        let img = RgbaImage::from_pixel(32, 32, Rgba([255, 0, 0, 128]));
        let px = output_pixels(&run(&encoded(&img.into(), ImageFormat::Png)).expect("compresses"));
        assert_near(*px.get_pixel(16, 16), [255, 127, 127], 8);
    }

    #[test]
    fn half_transparent_16_bit_red_is_pink_too() {
        let img: ImageBuffer<Rgba<u16>, _> = ImageBuffer::from_pixel(16, 16, Rgba([65535, 0, 0, 32768]));
        let px = output_pixels(&run(&encoded(&DynamicImage::ImageRgba16(img), ImageFormat::Png)).expect("compresses"));
        assert_near(*px.get_pixel(8, 8), [255, 127, 127], 8);
    }

    #[test]
    fn sixteen_bit_grayscale_png_comes_out_gray_not_white() {
        let img: ImageBuffer<Luma<u16>, _> = ImageBuffer::from_pixel(32, 32, Luma([32768]));
        let px = output_pixels(&run(&encoded(&DynamicImage::ImageLuma16(img), ImageFormat::Png)).expect("compresses"));
        assert_near(*px.get_pixel(16, 16), [128, 128, 128], 4);
    }

    #[test]
    fn gif_is_accepted() {
        let img = RgbaImage::from_pixel(20, 10, Rgba([0, 200, 0, 255]));
        let out = run(&encoded(&img.into(), ImageFormat::Gif)).expect("compresses");
        assert_eq!((out.width, out.height, out.input_format), (20, 10, InputFormat::Gif));
        assert_near(*output_pixels(&out).get_pixel(10, 5), [0, 200, 0], 12);
    }

    #[test]
    fn lossless_webp_is_accepted() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 10, Rgba([200, 0, 0, 255])));
        let out = run(&encoded(&img, ImageFormat::WebP)).expect("compresses");
        assert_eq!((out.width, out.height, out.input_format), (20, 10, InputFormat::WebP));
        assert_near(*output_pixels(&out).get_pixel(10, 5), [200, 0, 0], 12);
    }

    /// A big-endian TIFF/EXIF block with one IFD entry: Orientation (0x0112), SHORT, `value`.
    fn exif_app1(value: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        tiff.extend(value.to_be_bytes());
        tiff.extend([0, 0, 0, 0, 0, 0]); // value padding, then "no next IFD"
        let mut segment = vec![0xFF, 0xE1];
        segment.extend(u16::try_from(2 + 6 + tiff.len()).expect("small").to_be_bytes());
        segment.extend(b"Exif\0\0");
        segment.extend(tiff);
        segment
    }

    #[test]
    fn exif_orientation_6_is_applied_and_dropped() {
        // Left half red, right half blue; orientation 6 means "rotate 90 degrees clockwise to view".
        let img = RgbImage::from_fn(40, 20, |x, _| if x < 20 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let plain = jpeg_q(&img, 95);
        let mut jpeg = plain[..2].to_vec();
        jpeg.extend(exif_app1(6));
        jpeg.extend(&plain[2..]);

        let out = run(&jpeg).expect("compresses");
        assert_eq!((out.width, out.height), (20, 40));
        let px = output_pixels(&out);
        assert_near(*px.get_pixel(10, 5), [255, 0, 0], 20);
        assert_near(*px.get_pixel(10, 35), [0, 0, 255], 20);
        assert!(!out.jpeg.windows(4).any(|w| w == b"Exif"), "output must carry no EXIF");
    }

    #[test]
    fn image_over_the_pixel_limit_is_refused() {
        let png = encoded(&GrayImage::new(3000, 3000).into(), ImageFormat::Png);
        let limits = CodecLimits { max_pixels: 1_000_000, ..CodecLimits::default() };
        let err = compress(&png, &limits).err().expect("refused");
        assert!(matches!(err, CodecError::TooManyPixels { pixels: 9_000_000, limit: 1_000_000 }), "{err:?}");
        assert_eq!(err.code(), "too_many_pixels");
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc_input = kind.to_vec();
        crc_input.extend(data);
        let mut crc = !0u32;
        for byte in &crc_input {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        let mut chunk = u32::try_from(data.len()).expect("small").to_be_bytes().to_vec();
        chunk.extend(crc_input);
        chunk.extend((!crc).to_be_bytes());
        chunk
    }

    #[test]
    fn tiny_png_declaring_900_megapixels_is_refused_from_its_header() {
        let mut ihdr = Vec::new();
        ihdr.extend(30_000u32.to_be_bytes());
        ihdr.extend(30_000u32.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter method, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(png_chunk(b"IHDR", &ihdr));
        png.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
        png.extend(png_chunk(b"IEND", &[]));
        assert!(png.len() < 100);
        let err = run(&png).err().expect("refused");
        assert!(matches!(err, CodecError::TooManyPixels { pixels: 900_000_000, .. }), "{err:?}");
    }

    fn bmp_header() -> Vec<u8> {
        let mut bmp = b"BM".to_vec();
        bmp.extend(58u32.to_le_bytes()); // file size
        bmp.extend([0, 0, 0, 0]);
        bmp.extend(54u32.to_le_bytes()); // pixel data offset
        bmp.extend(40u32.to_le_bytes()); // BITMAPINFOHEADER
        bmp.extend(1i32.to_le_bytes());
        bmp.extend(1i32.to_le_bytes());
        bmp.extend([1, 0, 24, 0]);
        bmp.extend([0; 24]);
        bmp.extend([0, 0, 255, 0]);
        bmp
    }

    #[test]
    fn formats_are_told_apart_by_their_bytes() {
        let cases: [(&[u8], &str); 9] = [
            (b"<!DOCTYPE html><html><body>Not found</body></html>", "not_an_image"),
            (b"", "not_an_image"),
            (b"BMW,Series 3\n", "not_an_image"),
            (b"<?xml version=\"1.0\"?><rss></rss>", "not_an_image"),
            (b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n", "unsupported_format"),
            (b"\xEF\xBB\xBF  <svg xmlns=\"http://www.w3.org/2000/svg\"/>", "unsupported_format"),
            (b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "unsupported_format"),
            (b"II*\0\x08\0\0\0", "unsupported_format"),
            (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "unsupported_format"),
        ];
        for (input, code) in cases {
            let err = run(input).err().expect("refused");
            assert_eq!(err.code(), code, "{:?}: {err}", String::from_utf8_lossy(input));
        }
        let err = run(&bmp_header()).err().expect("refused");
        assert_eq!(err.to_string(), "BMP images are not supported");
        let err = run(b"%PDF-1.4").err().expect("refused");
        assert!(matches!(&err, CodecError::UnsupportedFormat(name) if name == "PDF"), "{err:?}");
    }

    #[test]
    fn truncated_jpeg_gives_an_error_or_a_partial_image() {
        let jpeg = jpeg_q(&gradient(256, 256), 90);
        match run(&jpeg[..jpeg.len() / 2]) {
            Ok(out) => assert_eq!((out.width, out.height), (256, 256)),
            Err(err) => assert_eq!(err.code(), "decode_error", "{err}"),
        }
    }

    /// Not a fuzzer, but every prefix and a few corruptions of every fixture must not panic.
    #[test]
    fn damaged_inputs_do_not_panic() {
        let img =
            DynamicImage::ImageRgba8(RgbaImage::from_fn(24, 16, |x, y| Rgba([x as u8 * 10, y as u8 * 15, 90, 200])));
        let fixtures = [
            jpeg_q(&img.to_rgb8(), 80),
            encoded(&img, ImageFormat::Png),
            encoded(&img, ImageFormat::Gif),
            encoded(&img, ImageFormat::WebP),
        ];
        for fixture in &fixtures {
            for len in (0..fixture.len()).step_by(7) {
                let _ = run(&fixture[..len]);
                let mut flipped = fixture.clone();
                flipped[len] ^= 0x5A;
                let _ = run(&flipped);
            }
        }
    }

    #[test]
    fn cmyk_jpeg_from_photoshop_is_read_with_inverted_channels() {
        // Adobe convention: stored value = 255 - ink. Pure red = magenta + yellow ink, no black.
        let cmyk = [255u8, 0, 0, 255].repeat(8 * 8);
        let image =
            turbojpeg::Image { pixels: cmyk.as_slice(), width: 8, pitch: 32, height: 8, format: PixelFormat::CMYK };
        let mut compressor = turbojpeg::Compressor::new().expect("compressor");
        compressor.set_quality(95).expect("quality");
        compressor.set_subsamp(Subsamp::None).expect("subsamp");
        let jpeg = compressor.compress_to_vec(image).expect("fixture encodes");
        assert!(has_adobe_marker(&jpeg), "libjpeg-turbo writes the Adobe marker for CMYK");

        let px = output_pixels(&run(&jpeg).expect("compresses"));
        assert_near(*px.get_pixel(4, 4), [255, 0, 0], 30);
    }

    #[test]
    fn photo_like_jpeg_at_q95_gets_smaller() {
        let mut seed = 0x2545_F491u32;
        let photo = RgbImage::from_fn(1000, 800, |x, y| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 28) as i32 - 8;
            let wave = ((x as f32 / 60.0).sin() * 40.0 + (y as f32 / 45.0).cos() * 40.0) as i32;
            let channel = |base: i32| (base + wave + noise).clamp(0, 255) as u8;
            Rgb([channel(120 + (x / 8) as i32), channel(100 + (y / 8) as i32), channel(140)])
        });
        let input = jpeg_q(&photo, 95);
        let out = run(&input).expect("compresses");
        assert_eq!((out.width, out.height), (1000, 800));
        assert!(out.jpeg.len() < input.len(), "{} >= {}", out.jpeg.len(), input.len());
    }
}
