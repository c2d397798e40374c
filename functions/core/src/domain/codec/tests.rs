use super::*;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba, RgbaImage};
use imgpipe_fixtures::jpeg::{exif_app1, exif_orientation, insert_after_soi, segment, with_exif_orientation};
use imgpipe_fixtures::png::{palette_png, png_bomb, png_chunk};
use imgpipe_fixtures::{animated_gif, encoded};

mod fast_paths;

/// Records, per thread, the largest single allocation, so tests can show that a file
/// declaring a huge image is refused before any pixel buffer exists; and the most bytes held
/// at once, so they can hold the codec to its memory limit. Rust allocations only: what
/// libjpeg-turbo allocates in C is not seen.
mod alloc_probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    struct Probe;

    fn record(size: usize) {
        let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        held(size as isize);
    }

    fn held(change: isize) {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + change);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(new_size)));
            held(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            held(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static PROBE: Probe = Probe;

    /// Runs `f` and returns its result with the largest allocation it made on this thread.
    pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|largest| largest.set(0));
        let result = f();
        (result, LARGEST.with(Cell::get))
    }

    /// Runs `f` and returns its result with the most bytes it held allocated at once on this
    /// thread (above what the thread held before).
    pub fn most_held<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let result = f();
        (result, usize::try_from(PEAK.with(Cell::get) - before).unwrap_or(0))
    }
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

fn output_colorspace(out: &Compressed) -> Colorspace {
    turbojpeg::read_header(&out.jpeg).expect("output is a JPEG").colorspace
}

fn assert_near(actual: Rgb<u8>, expected: [u8; 3], tolerance: u8) {
    let close = actual.0.iter().zip(expected).all(|(&a, e)| a.abs_diff(e) <= tolerance);
    assert!(close, "got {:?}, expected {expected:?} +/- {tolerance}", actual.0);
}

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ----- JPEG segment helpers -----

/// The segments before the first scan, as (marker, payload).
fn header_segments(jpeg: &[u8]) -> Vec<(u8, &[u8])> {
    let mut segments = Vec::new();
    let mut pos = 2;
    while let Some(head) = jpeg.get(pos..pos + 4) {
        let end = pos + 2 + usize::from(u16::from_be_bytes([head[2], head[3]]));
        segments.push((head[1], &jpeg[pos + 4..end]));
        if head[1] == SOS {
            break;
        }
        pos = end;
    }
    segments
}

fn without_segments(jpeg: &[u8], marker: u8) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pos = 2;
    for (m, payload) in header_segments(jpeg) {
        if m == SOS {
            break;
        }
        if m != marker {
            out.extend(&jpeg[pos..pos + 4 + payload.len()]);
        }
        pos += 4 + payload.len();
    }
    out.extend(&jpeg[pos..]);
    out
}

const GPS_SECRET: &[u8] = b"GPS-SECRET-51.5N";

/// EXIF with Orientation and a GPS IFD holding a latitude ref and `GPS_SECRET` as the
/// GPSProcessingMethod, the way phones write them.
fn exif_tiff_with_gps(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend([0, 2]);
    tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]);
    tiff.extend([0x88, 0x25, 0, 4, 0, 0, 0, 1]); // GPSInfo IFD pointer
    tiff.extend(38u32.to_be_bytes());
    tiff.extend([0, 0, 0, 0]);
    assert_eq!(tiff.len(), 38);
    tiff.extend([0, 2]);
    tiff.extend([0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]); // GPSLatitudeRef "N"
    tiff.extend([0x00, 0x1B, 0, 7, 0, 0, 0, GPS_SECRET.len() as u8]); // GPSProcessingMethod
    tiff.extend(68u32.to_be_bytes());
    tiff.extend([0, 0, 0, 0]);
    assert_eq!(tiff.len(), 68);
    tiff.extend(GPS_SECRET);
    tiff
}

/// Everything a phone or an editor leaves in a JPEG besides the picture.
fn metadata_segments() -> Vec<Vec<u8>> {
    vec![
        exif_app1(&exif_tiff_with_gps(1)),
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>XMP-SECRET</x:xmpmeta>"),
        segment(0xED, b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x0cIPTC-SECRET!"),
        segment(0xE2, b"MPF\0MPF-SECRET"),
        segment(COM, b"COM-SECRET"),
    ]
}

const SECRETS: [&[u8]; 7] =
    [b"Exif", GPS_SECRET, b"XMP-SECRET", b"IPTC-SECRET", b"MPF-SECRET", b"COM-SECRET", b"TRAILER-SECRET"];

fn assert_no_metadata(jpeg: &[u8]) {
    for secret in SECRETS {
        assert!(!contains(jpeg, secret), "output contains {:?}", String::from_utf8_lossy(secret));
    }
    let markers: Vec<u8> = header_segments(jpeg).iter().map(|(m, _)| *m).collect();
    assert!(!markers.iter().any(|&m| matches!(m, 0xE1 | 0xED | COM)), "segments {markers:02X?}");
}

// ----- formats -----

#[test]
fn jpeg_in_gives_jpeg_out_with_same_dimensions() {
    let input = jpeg_q(&gradient(64, 48), 90);
    assert!(decode_jpeg_turbo(&input, (64, 48)).is_some(), "ordinary JPEGs take the libjpeg-turbo path");
    let out = run(&input).expect("compresses");
    assert_eq!((out.width, out.height, out.input_format), (64, 48, InputFormat::Jpeg));
    assert_eq!(output_pixels(&out).dimensions(), (64, 48));
    assert_eq!(output_colorspace(&out), Colorspace::YCbCr);
}

#[test]
fn transparent_pixels_with_hidden_black_come_out_white() {
    let img = RgbaImage::from_fn(32, 32, |x, _| if x < 16 { Rgba([0, 0, 0, 0]) } else { Rgba([0, 0, 255, 255]) });
    let out = run(&encoded(img.clone(), ImageFormat::Png)).expect("compresses");
    assert_eq!(out.input_format, InputFormat::Png);
    let px = output_pixels(&out);
    assert_near(*px.get_pixel(4, 16), [255, 255, 255], 6);
    assert_near(*px.get_pixel(28, 16), [0, 0, 255], 12);
}

#[test]
fn half_transparent_red_over_white_is_pink() {
    let img = RgbaImage::from_pixel(32, 32, Rgba([255, 0, 0, 128]));
    let px = output_pixels(&run(&encoded(img.clone(), ImageFormat::Png)).expect("compresses"));
    assert_near(*px.get_pixel(16, 16), [255, 127, 127], 8);
}

#[test]
fn half_transparent_16_bit_red_is_pink_too() {
    let img: ImageBuffer<Rgba<u16>, _> = ImageBuffer::from_pixel(16, 16, Rgba([65535, 0, 0, 32768]));
    let px = output_pixels(&run(&encoded(DynamicImage::ImageRgba16(img), ImageFormat::Png)).expect("compresses"));
    assert_near(*px.get_pixel(8, 8), [255, 127, 127], 8);
}

#[test]
fn sixteen_bit_rgb_is_scaled_to_8_bits() {
    let img: ImageBuffer<Rgb<u16>, _> = ImageBuffer::from_pixel(16, 16, Rgb([65535, 32768, 0]));
    let px = output_pixels(&run(&encoded(DynamicImage::ImageRgb16(img), ImageFormat::Png)).expect("compresses"));
    assert_near(*px.get_pixel(8, 8), [255, 128, 0], 8);
}

#[test]
fn sixteen_bit_grayscale_png_comes_out_gray_not_white() {
    let img: ImageBuffer<Luma<u16>, _> = ImageBuffer::from_pixel(32, 32, Luma([32768]));
    let out = run(&encoded(DynamicImage::ImageLuma16(img), ImageFormat::Png)).expect("compresses");
    assert_near(*output_pixels(&out).get_pixel(16, 16), [128, 128, 128], 4);
    assert_eq!(output_colorspace(&out), Colorspace::Gray);
}

#[test]
fn grayscale_in_gives_one_component_jpeg_out() {
    let gray = GrayImage::from_fn(64, 32, |x, _| Luma([(x * 4) as u8]));
    let png = encoded(gray.clone(), ImageFormat::Png);
    let mut gray_jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut gray_jpeg, 90).encode_image(&gray).expect("fixture encodes");
    let turbo = decode_jpeg_turbo(&gray_jpeg, (64, 32)).expect("libjpeg-turbo path");
    assert!(matches!(turbo, DynamicImage::ImageLuma8(_)), "gray JPEG decodes to gray");

    for input in [png, gray_jpeg] {
        let out = run(&input).expect("compresses");
        assert_eq!(output_colorspace(&out), Colorspace::Gray);
        let sof = header_segments(&out.jpeg).into_iter().find(|(m, _)| *m == 0xC0).expect("baseline SOF");
        assert_eq!(sof.1[5], 1, "one component");
        assert_near(*output_pixels(&out).get_pixel(32, 16), [128, 128, 128], 6);
    }
    // The same picture as RGB costs more bytes.
    let as_rgb = run(&encoded(DynamicImage::ImageLuma8(gray.clone()).to_rgb8(), ImageFormat::Png)).expect("ok");
    assert_eq!(output_colorspace(&as_rgb), Colorspace::YCbCr);
    assert!(as_rgb.jpeg.len() > run(&encoded(gray, ImageFormat::Png)).expect("ok").jpeg.len());
}

#[test]
fn transparent_grayscale_is_flattened_onto_white_and_stays_gray() {
    let img = ImageBuffer::from_fn(32, 32, |x, _| if x < 16 { LumaA([0u8, 0]) } else { LumaA([0, 255]) });
    let out = run(&encoded(DynamicImage::ImageLumaA8(img), ImageFormat::Png)).expect("compresses");
    assert_eq!(output_colorspace(&out), Colorspace::Gray);
    let px = output_pixels(&out);
    assert_near(*px.get_pixel(4, 16), [255, 255, 255], 6);
    assert_near(*px.get_pixel(28, 16), [0, 0, 0], 6);
}

#[test]
fn palette_png_with_transparency_is_expanded_and_flattened() {
    // Index 0 opaque red, 1 fully transparent black, 2 half-transparent blue.
    let png = palette_png(24, 8, 128);

    let out = run(&png).expect("compresses");
    let px = output_pixels(&out);
    assert_near(*px.get_pixel(4, 4), [255, 0, 0], 30);
    assert_near(*px.get_pixel(12, 4), [255, 255, 255], 12);
    assert_near(*px.get_pixel(20, 4), [127, 127, 255], 30);
}

#[test]
fn gif_is_accepted() {
    let img = RgbaImage::from_pixel(20, 10, Rgba([0, 200, 0, 255]));
    let out = run(&encoded(img.clone(), ImageFormat::Gif)).expect("compresses");
    assert_eq!((out.width, out.height, out.input_format), (20, 10, InputFormat::Gif));
    assert_near(*output_pixels(&out).get_pixel(10, 5), [0, 200, 0], 12);
}

#[test]
fn animated_gif_gives_its_first_frame() {
    let gif = animated_gif(16, &[[220, 0, 0], [0, 0, 220]]);
    let out = run(&gif).expect("compresses");
    assert_near(*output_pixels(&out).get_pixel(8, 8), [220, 0, 0], 20);
}

#[test]
fn lossless_webp_is_accepted() {
    let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 10, Rgba([200, 0, 0, 255])));
    let out = run(&encoded(img.clone(), ImageFormat::WebP)).expect("compresses");
    assert_eq!((out.width, out.height, out.input_format), (20, 10, InputFormat::WebP));
    assert_near(*output_pixels(&out).get_pixel(10, 5), [200, 0, 0], 12);
}

#[test]
fn bmp_and_tiff_are_accepted() {
    let img =
        DynamicImage::ImageRgb8(RgbImage::from_fn(20, 10, |x, _| Rgb(if x < 10 { [200, 0, 0] } else { [0, 0, 200] })));
    for (format, expected) in [(ImageFormat::Bmp, InputFormat::Bmp), (ImageFormat::Tiff, InputFormat::Tiff)] {
        let out = run(&encoded(img.clone(), format)).expect("compresses");
        assert_eq!((out.width, out.height, out.input_format), (20, 10, expected));
        let px = output_pixels(&out);
        assert_near(*px.get_pixel(3, 5), [200, 0, 0], 30);
        assert_near(*px.get_pixel(16, 5), [0, 0, 200], 30);
    }
    // A hand-made 1x1 red BMP, as found in the wild (BITMAPINFOHEADER, 24 bits).
    let out = run(&bmp_header()).expect("compresses");
    assert_eq!((out.width, out.height, out.input_format), (1, 1, InputFormat::Bmp));
    assert_near(*output_pixels(&out).get_pixel(0, 0), [255, 0, 0], 30);
}

/// Little-endian baseline TIFF: 8-bit grayscale, uncompressed, one strip.
fn gray_tiff(width: u32, height: u32, pixels: &[u8], orientation: Option<u16>) -> Vec<u8> {
    let ifd_offset = 8 + pixels.len().next_multiple_of(2);
    let strip_bytes = u32::try_from(pixels.len()).expect("small");
    // (tag, type: 3 SHORT / 4 LONG, value)
    let mut entries: Vec<(u16, u16, u32)> = vec![
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, strip_bytes),
    ];
    entries.extend(orientation.map(|value| (274, 3, u32::from(value))));
    entries.sort();
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(u32::try_from(ifd_offset).expect("small").to_le_bytes());
    tiff.extend(pixels);
    tiff.resize(ifd_offset, 0);
    tiff.extend(u16::try_from(entries.len()).expect("small").to_le_bytes());
    for (tag, kind, value) in entries {
        tiff.extend(tag.to_le_bytes());
        tiff.extend(kind.to_le_bytes());
        tiff.extend(1u32.to_le_bytes());
        match kind {
            3 => tiff.extend([(value as u16).to_le_bytes(), [0, 0]].concat()),
            _ => tiff.extend(value.to_le_bytes()),
        }
    }
    tiff.extend(0u32.to_le_bytes());
    tiff
}

#[test]
fn formats_are_told_apart_by_their_bytes() {
    let cases: [(&[u8], &str); 20] = [
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not_an_image"),
        (b"<html><head><title>403 Forbidden</title></head></html>", "not_an_image"),
        (b"", "not_an_image"),
        (b"BMW,Series 3\n", "not_an_image"),
        (b"P1ease log in", "not_an_image"),
        (b"{\"error\": \"not found\"}", "not_an_image"),
        (b"<?xml version=\"1.0\"?><rss></rss>", "not_an_image"),
        (b"\x00\x01\x02\x03garbage", "not_an_image"),
        (b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n", "unsupported_format"),
        (b"\xEF\xBB\xBF  <svg xmlns=\"http://www.w3.org/2000/svg\"/>", "unsupported_format"),
        (b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "unsupported_format"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "unsupported_format"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "unsupported_format"),
        (b"\0\0\0\x1cftypavis\0\0\0\0avismsf1", "unsupported_format"),
        (b"\0\0\x01\0\x01\0\x10\x10\0\0\x01\0\x20\0", "unsupported_format"), // ICO
        (b"8BPS\0\x01\0\0\0\0\0\0\0\x03", "unsupported_format"),
        (b"\xFF\x0A\xFA\x7F", "unsupported_format"), // JPEG XL codestream
        (b"qoif\0\0\0\x10\0\0\0\x10\x03\0", "unsupported_format"),
        (b"II*\0\x08\0\0\0", "decode_error"), // TIFF, now decoded: a header and nothing else
        (b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", "decode_error"),
    ];
    for (input, code) in cases {
        let err = run(input).err().expect("refused");
        assert_eq!(err.code(), code, "{:?}: {err}", String::from_utf8_lossy(input));
    }
    let err = run(b"%PDF-1.4").err().expect("refused");
    assert!(matches!(&err, CodecError::UnsupportedFormat(name) if name == "PDF"), "{err:?}");
    assert_eq!(err.to_string(), "PDF images are not supported");
    let err = run(b"\0\0\x01\0\x01\0\x10\x10").err().expect("refused");
    assert_eq!(err.to_string(), "ICO images are not supported");
}

// ----- orientation -----

/// Where the top-left (red) and top-right (blue) corners of a 48x32 picture end up for
/// each EXIF orientation, and whether width and height swap.
const ORIENTATIONS: [(u16, &str, &str, bool); 8] = [
    (1, "TL", "TR", false),
    (2, "TR", "TL", false), // mirrored left-right
    (3, "BR", "BL", false), // rotated 180
    (4, "BL", "BR", false), // mirrored top-bottom
    (5, "TL", "BL", true),  // transposed
    (6, "TR", "BR", true),  // rotated 90 clockwise
    (7, "BR", "TR", true),  // transversed
    (8, "BL", "TL", true),  // rotated 90 counter-clockwise
];

fn corner(name: &str, (width, height): (u32, u32)) -> (u32, u32) {
    let inset = 6;
    match name {
        "TL" => (inset, inset),
        "TR" => (width - 1 - inset, inset),
        "BL" => (inset, height - 1 - inset),
        _ => (width - 1 - inset, height - 1 - inset),
    }
}

fn marked_corners() -> RgbImage {
    RgbImage::from_fn(48, 32, |x, y| match (x, y) {
        (0..16, 0..16) => Rgb([255, 0, 0]),
        (32.., 0..16) => Rgb([0, 0, 255]),
        _ => Rgb([128, 128, 128]),
    })
}

fn assert_oriented(out: &Compressed, orientation: u16) {
    let &(_, red, blue, swapped) = ORIENTATIONS.iter().find(|o| o.0 == orientation).expect("known");
    let size = if swapped { (32, 48) } else { (48, 32) };
    assert_eq!((out.width, out.height), size, "orientation {orientation}");
    let px = output_pixels(out);
    assert_eq!(px.dimensions(), size);
    for name in ["TL", "TR", "BL", "BR"] {
        let expected = match name {
            _ if name == red => [255, 0, 0],
            _ if name == blue => [0, 0, 255],
            _ => [128, 128, 128],
        };
        let (x, y) = corner(name, size);
        let actual = *px.get_pixel(x, y);
        assert!(
            actual.0.iter().zip(expected).all(|(&a, e)| a.abs_diff(e) <= 30),
            "orientation {orientation}, corner {name}: got {:?}, expected {expected:?}",
            actual.0
        );
    }
}

#[test]
fn all_eight_exif_orientations_of_a_jpeg_are_applied() {
    let plain = jpeg_q(&marked_corners(), 95);
    for (orientation, ..) in ORIENTATIONS {
        let jpeg = with_exif_orientation(&plain, orientation);
        let out = run(&jpeg).expect("compresses");
        assert_oriented(&out, orientation);
        assert!(!out.kept_original, "orientation {orientation}");
        assert_no_metadata(&out.jpeg);
    }
}

#[test]
fn png_exif_orientation_is_applied() {
    let png = encoded(marked_corners(), ImageFormat::Png);
    let ihdr_end = 8 + 25;
    let png = [&png[..ihdr_end], &png_chunk(b"eXIf", &exif_orientation(6)), &png[ihdr_end..]].concat();
    assert_oriented(&run(&png).expect("compresses"), 6);
}

#[test]
fn webp_exif_orientation_is_applied() {
    let simple = encoded(marked_corners(), ImageFormat::WebP);
    assert_eq!(&simple[12..16], b"VP8L", "image writes the simple lossless format");
    let tiff = exif_orientation(8);
    let mut body = b"WEBP".to_vec();
    body.extend(b"VP8X");
    body.extend(10u32.to_le_bytes());
    body.extend([0x08, 0, 0, 0]); // flags: EXIF
    body.extend(&47u32.to_le_bytes()[..3]);
    body.extend(&31u32.to_le_bytes()[..3]);
    body.extend(&simple[12..]);
    body.extend(b"EXIF");
    body.extend(u32::try_from(tiff.len()).expect("small").to_le_bytes());
    body.extend(&tiff);
    let mut webp = b"RIFF".to_vec();
    webp.extend(u32::try_from(body.len()).expect("small").to_le_bytes());
    webp.extend(body);
    assert_oriented(&run(&webp).expect("compresses"), 8);
}

#[test]
fn tiff_orientation_is_applied() {
    // Gray: left half black, right half white; orientation 6 puts the left half on top.
    let pixels: Vec<u8> = (0..20).flat_map(|_| (0..40).map(|x| if x < 20 { 0 } else { 255 })).collect();
    let out = run(&gray_tiff(40, 20, &pixels, Some(6))).expect("compresses");
    assert_eq!((out.width, out.height, out.input_format), (20, 40, InputFormat::Tiff));
    assert_eq!(output_colorspace(&out), Colorspace::Gray);
    let px = output_pixels(&out);
    assert_near(*px.get_pixel(10, 5), [0, 0, 0], 10);
    assert_near(*px.get_pixel(10, 35), [255, 255, 255], 10);
}

// ----- size limits -----

#[test]
fn image_over_the_pixel_limit_is_refused() {
    let png = encoded(GrayImage::new(3000, 3000), ImageFormat::Png);
    let limits = CodecLimits { max_pixels: 1_000_000, ..CodecLimits::default() };
    let err = compress(&png, &limits).err().expect("refused");
    assert!(matches!(err, CodecError::TooManyPixels { pixels: 9_000_000, limit: 1_000_000 }), "{err:?}");
    assert_eq!(err.code(), "too_many_pixels");
}

/// Small files whose headers declare huge images: refused from the header, and the largest
/// allocation made while refusing them stays far below one row of pixels.
#[test]
fn header_bombs_are_refused_without_allocating_pixels() {
    let mut jpeg = jpeg_q(&gradient(16, 16), 50);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]); // 65000 x 65000

    let mut gif = encoded(RgbaImage::new(1, 1), ImageFormat::Gif);
    gif[6..10].copy_from_slice(&[0xFF; 4]); // logical screen 65535 x 65535
    let gif_pixels = 65_535u64 * 65_535;

    let mut webp = encoded(RgbaImage::new(1, 1), ImageFormat::WebP);
    assert_eq!(&webp[12..16], b"VP8L");
    let bits = u32::from_le_bytes(webp[21..25].try_into().expect("4 bytes"));
    // 16383 x 16383: image-webp 0.2.4 reads the largest size, 16384, as 0.
    webp[21..25].copy_from_slice(&((bits & 0xF000_0000) | 0x3FFE | (0x3FFE << 14)).to_le_bytes());

    let mut bmp = bmp_header();
    bmp[18..26].copy_from_slice(&[60_000i32.to_le_bytes(), 60_000i32.to_le_bytes()].concat()); // image's own limit is 65535

    let cases: [(&str, Vec<u8>, u64); 6] = [
        ("png", png_bomb(30_000, 30_000), 900_000_000),
        ("tiff", gray_tiff(100_000, 100_000, &[0; 16], None), 10_000_000_000),
        ("jpeg", jpeg, 65_000 * 65_000),
        ("gif", gif, gif_pixels),
        ("webp", webp, 16_383 * 16_383),
        ("bmp", bmp, 3_600_000_000),
    ];
    for (name, input, declared) in cases {
        assert!(input.len() < 2000, "{name} bomb is {} bytes", input.len());
        let (result, largest) = alloc_probe::largest_allocation(|| run(&input));
        let err = result.err().unwrap_or_else(|| panic!("{name} bomb accepted"));
        assert!(
            matches!(err, CodecError::TooManyPixels { pixels, limit: 50_000_000 } if pixels == declared),
            "{name}: {err:?}"
        );
        assert!(largest < 1 << 20, "{name}: allocated {largest} bytes at once");
    }
    // The probe sees pixel buffers: a real 1200 x 1000 decode allocates at least 1.2 MB at once.
    let real = encoded(GrayImage::new(1200, 1000), ImageFormat::Png);
    let (result, largest) = alloc_probe::largest_allocation(|| run(&real));
    assert!(result.is_ok() && largest >= 1_200_000, "{largest}");
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

/// The memory limit is what decoding may hold at once, whatever the orientation. Under every
/// limit from 1 to 20 bytes per pixel, in each of the 8 EXIF orientations, a 16-bit RGBA PNG (8
/// bytes per pixel decoded) and a CMYK JPEG (4 bytes per pixel from libjpeg-turbo) are refused
/// or hold no more than the limit (plus a little for rows, the inflate window and the output).
#[test]
fn decoding_holds_no_more_than_the_memory_limit_in_any_orientation() {
    let (width, height) = (600u16, 400u16);
    let pixels = u64::from(width) * u64::from(height);
    let rgba16: ImageBuffer<Rgba<u16>, _> = ImageBuffer::from_fn(width.into(), height.into(), |x, y| {
        Rgba([x as u16 * 99, y as u16 * 151, 3000, 65535 - x as u16 * 50])
    });
    let png = encoded(DynamicImage::ImageRgba16(rgba16), ImageFormat::Png);
    let ihdr_end = 8 + 25;
    let png_turned = |orientation| {
        [&png[..ihdr_end], &png_chunk(b"eXIf", &exif_orientation(orientation)), &png[ihdr_end..]].concat()
    };
    let ink: Vec<u8> = (0..pixels).flat_map(|i| [(i % 251) as u8, (i % 241) as u8, 40, (i % 7) as u8 * 30]).collect();
    let cmyk = cmyk_jpeg(&ink, width.into(), height.into(), Colorspace::CMYK);
    let slack = 256 << 10;
    for (name, turned) in [
        ("16-bit RGBA PNG", &png_turned as &dyn Fn(u16) -> Vec<u8>),
        ("CMYK JPEG", &|orientation| with_exif_orientation(&cmyk, orientation)),
    ] {
        for orientation in 1..=8 {
            let input = turned(orientation);
            let mut accepted = Vec::new();
            for bytes_per_pixel in 1..=20 {
                let limit = pixels * bytes_per_pixel;
                let limits = CodecLimits { max_alloc_bytes: limit, ..CodecLimits::default() };
                let (result, held) = alloc_probe::most_held(|| compress(&input, &limits));
                match result {
                    Ok(_) => {
                        assert!(
                            held as u64 <= limit + slack,
                            "{name}, orientation {orientation}, limit {bytes_per_pixel} bytes per pixel: held {:.1}",
                            held as f64 / pixels as f64
                        );
                        accepted.push(bytes_per_pixel);
                    }
                    Err(err) => assert_eq!(err.code(), "decode_error", "{name}, orientation {orientation}: {err}"),
                }
            }
            assert!(accepted.contains(&20), "{name}, orientation {orientation}: refused even at 20 bytes per pixel");
        }
    }
}

/// The estimate, step by step: decoded buffer and 8-bit copy, or the 8-bit copy twice for a turn.
#[test]
fn the_memory_estimate_counts_the_copy_a_turn_makes() {
    let pixels = 1_000_000;
    let turns =
        [Orientation::Rotate90, Orientation::Rotate270, Orientation::Rotate90FlipH, Orientation::Rotate270FlipH];
    let in_place =
        [Orientation::NoTransforms, Orientation::Rotate180, Orientation::FlipHorizontal, Orientation::FlipVertical];
    for orientation in in_place {
        assert_eq!(decode_memory(pixels, pixels, orientation), 4 * pixels, "gray, {orientation:?}");
        assert_eq!(decode_memory(8 * pixels, pixels, orientation), 11 * pixels, "16-bit RGBA, {orientation:?}");
    }
    for orientation in turns {
        // A gray image turned holds its 8-bit copy twice (counted at 3 bytes per pixel).
        assert_eq!(decode_memory(pixels, pixels, orientation), 6 * pixels, "gray, {orientation:?}");
        // Turned after flattening, a 16-bit RGBA image holds no more than unturned.
        assert_eq!(decode_memory(8 * pixels, pixels, orientation), 11 * pixels, "16-bit RGBA, {orientation:?}");
    }
    assert_eq!(decode_memory(u64::MAX, u64::MAX, Orientation::Rotate90), u64::MAX, "saturates");
}

/// The worst image the pixel limit allows, 50 MP of 16-bit RGBA turned by its EXIF orientation,
/// fits the default decode limit: 400 MB decoded + 150 MB flattened = 524 MiB of 582 MiB.
#[test]
fn the_worst_allowed_image_fits_the_default_limit() {
    let limits = CodecLimits::default();
    let needed = decode_memory(limits.max_pixels * 8, limits.max_pixels, Orientation::Rotate90);
    assert_eq!(needed >> 20, 524);
    assert!(needed <= limits.max_alloc_bytes, "{needed} > {}", limits.max_alloc_bytes);
}

// ----- damaged input -----

#[test]
fn truncated_jpeg_gives_an_error_or_a_partial_image() {
    let jpeg = jpeg_q(&gradient(256, 256), 90);
    match run(&jpeg[..jpeg.len() / 2]) {
        Ok(out) => {
            assert_eq!((out.width, out.height), (256, 256));
            assert!(!out.kept_original, "a truncated file is never handed on");
            assert_eq!(out.path, CodecPath::Reencoded);
        }
        Err(err) => assert_eq!(err.code(), "decode_error", "{err}"),
    }
}

/// Not a fuzzer, but every prefix and a few corruptions of every fixture must not panic.
#[test]
fn damaged_inputs_do_not_panic() {
    let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(24, 16, |x, y| Rgba([x as u8 * 10, y as u8 * 15, 90, 200])));
    let gray: Vec<u8> = (0..24 * 16).map(|i| (i * 7) as u8).collect();
    let fixtures = [
        jpeg_q(&img.to_rgb8(), 80),
        insert_after_soi(&jpeg_q(&img.to_rgb8(), 30), &metadata_segments()),
        cmyk_jpeg(&[0, 255, 255, 0].repeat(24 * 16), 24, 16, Colorspace::YCCK),
        encoded(img.clone(), ImageFormat::Png),
        encoded(img.clone(), ImageFormat::Gif),
        encoded(img.clone(), ImageFormat::WebP),
        encoded(img.to_rgb8(), ImageFormat::Bmp),
        encoded(img.clone(), ImageFormat::Tiff),
        gray_tiff(24, 16, &gray, Some(5)),
        bmp_header(),
    ];
    for fixture in &fixtures {
        for len in (0..fixture.len()).step_by(7) {
            let _ = run(&fixture[..len]);
            let _ = strip_jpeg_metadata(&fixture[..len]);
            let mut flipped = fixture.clone();
            flipped[len] ^= 0x5A;
            let _ = run(&flipped);
            let _ = strip_jpeg_metadata(&flipped);
        }
    }
}

// ----- CMYK and YCCK JPEGs -----

/// Six 16x16 patches: red, green, blue, white, black, mid grey, as ink amounts (0 = none).
const CMYK_PATCHES: [[u8; 4]; 6] =
    [[0, 255, 255, 0], [255, 0, 255, 0], [255, 255, 0, 0], [0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 128]];

fn cmyk_patch_samples() -> Vec<u8> {
    let mut samples = Vec::new();
    for _y in 0..16 {
        for patch in CMYK_PATCHES {
            samples.extend(patch.repeat(16));
        }
    }
    samples
}

/// The reference: R = (255 - C) * (255 - K) / 255, and so on, rounded.
fn cmyk_reference([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    [c, m, y].map(|v| ((255.0 - f64::from(v)) * (255.0 - f64::from(k)) / 255.0).round() as u8)
}

/// libjpeg-turbo compresses the 4-channel `stored` samples as they are, in `colorspace`
/// (CMYK: no transform; YCCK: the YCC transform), at quality 50 without subsampling.
fn cmyk_jpeg(stored: &[u8], width: usize, height: usize, colorspace: Colorspace) -> Vec<u8> {
    let image = turbojpeg::Image { pixels: stored, width, pitch: width * 4, height, format: PixelFormat::CMYK };
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_quality(50).expect("quality");
    compressor.set_subsamp(Subsamp::None).expect("subsamp");
    compressor.set_colorspace(colorspace).expect("colorspace");
    compressor.compress_to_vec(image).expect("fixture encodes")
}

/// The Adobe APP14 transform byte: 0 = CMYK (or RGB) as stored, 1 = YCbCr, 2 = YCCK.
fn adobe_transform(jpeg: &[u8]) -> Option<u8> {
    let (_, payload) = header_segments(jpeg).into_iter().find(|(m, p)| *m == APP14 && p.starts_with(b"Adobe"))?;
    payload.get(11).copied()
}

fn assert_cmyk_patches(jpeg: &[u8], variant: &str) {
    assert!(decode_jpeg_turbo(jpeg, (96, 16)).is_some(), "{variant}: libjpeg-turbo path");
    let out = run(jpeg).expect("compresses");
    assert!(!out.kept_original, "{variant}: a CMYK file is never handed on");
    let px = output_pixels(&out);
    for (i, ink) in CMYK_PATCHES.into_iter().enumerate() {
        let expected = cmyk_reference(ink);
        let actual = *px.get_pixel(16 * i as u32 + 8, 8);
        let error = actual.0.iter().zip(expected).map(|(&a, e)| a.abs_diff(e)).max().unwrap_or(0);
        assert!(error <= 40, "{variant}, ink {ink:?}: got {:?}, expected {expected:?}", actual.0);
    }
}

#[test]
fn cmyk_and_ycck_jpegs_from_photoshop_are_read_inverted() {
    // Photoshop (Adobe APP14) stores 255 - ink.
    let inverted: Vec<u8> = cmyk_patch_samples().iter().map(|v| 255 - v).collect();
    for (colorspace, transform) in [(Colorspace::CMYK, 0), (Colorspace::YCCK, 2)] {
        let jpeg = cmyk_jpeg(&inverted, 96, 16, colorspace);
        assert_eq!(adobe_transform(&jpeg), Some(transform), "libjpeg-turbo writes the Adobe marker");
        assert_eq!(turbojpeg::read_header(&jpeg).expect("header").colorspace, colorspace);
        assert_cmyk_patches(&jpeg, &format!("Adobe, transform {transform}"));
    }
}

#[test]
fn cmyk_jpeg_without_adobe_marker_is_read_as_plain_ink() {
    // A non-Adobe writer stores ink amounts as they are and writes no APP14. Built from a
    // libjpeg-turbo CMYK (transform 0) file with its APP14 segment cut out: the component
    // data of a transform-0 file does not depend on the marker. (libjpeg reads any
    // 4-component file without the marker as CMYK, so a YCCK file needs its marker.)
    let jpeg = without_segments(&cmyk_jpeg(&cmyk_patch_samples(), 96, 16, Colorspace::CMYK), APP14);
    assert!(!has_adobe_marker(&jpeg));
    assert_eq!(turbojpeg::read_header(&jpeg).expect("header").colorspace, Colorspace::CMYK);
    assert_cmyk_patches(&jpeg, "no Adobe marker");
}

// ----- no gain: keeping the original JPEG -----

/// What other services write: libjpeg-turbo, 4:2:0.
fn turbo_jpeg(img: &RgbImage, quality: i32) -> Vec<u8> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let image =
        turbojpeg::Image { pixels: img.as_raw().as_slice(), width, pitch: width * 3, height, format: PixelFormat::RGB };
    turbojpeg::compress(image, quality, Subsamp::Sub2x2).expect("fixture encodes").to_vec()
}

#[test]
fn already_small_jpeg_is_kept_without_its_metadata() {
    let plain = turbo_jpeg(&gradient(64, 48), 30);
    let mut input = insert_after_soi(&plain, &metadata_segments());
    input.extend(b"TRAILER-SECRET: a second picture with its own EXIF");

    let out = run(&input).expect("compresses");
    assert!(out.kept_original, "q50 of a q30 file gains nothing");
    assert_eq!(out.path, CodecPath::KeptOriginal);
    assert_eq!(out.note(), Some("no_gain"));
    assert_eq!(out.jpeg, plain, "the input minus its metadata, byte for byte");
    assert!(out.jpeg.len() <= input.len());
    assert_eq!((out.width, out.height), (64, 48));
    assert_no_metadata(&out.jpeg);
    let encoded_len = encode(&Pixels::Rgb(gradient(64, 48))).expect("encodes").len();
    assert!(encoded_len >= plain.len(), "fixture premise: {encoded_len} < {}", plain.len());
}

#[test]
fn small_jpeg_that_must_be_rotated_is_re_encoded() {
    let plain = turbo_jpeg(&marked_corners(), 30);
    let input = insert_after_soi(&plain, &[exif_app1(&exif_tiff_with_gps(6))]);
    let out = run(&input).expect("compresses");
    assert!(!out.kept_original);
    assert_eq!(out.note(), None);
    assert_oriented(&out, 6);
    assert_no_metadata(&out.jpeg);
}

#[test]
fn q95_jpeg_with_gps_is_re_encoded_without_it() {
    let input = insert_after_soi(&jpeg_q(&gradient(256, 192), 95), &metadata_segments());
    let out = run(&input).expect("compresses");
    assert!(!out.kept_original);
    assert!(out.jpeg.len() < input.len());
    assert_no_metadata(&out.jpeg);
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
    assert!(!out.kept_original);
    assert!(out.jpeg.len() < input.len(), "{} >= {}", out.jpeg.len(), input.len());
}

#[test]
fn strip_keeps_picture_colour_and_profile_segments() {
    let plain = jpeg_q(&gradient(32, 32), 80);
    let keep = [segment(0xE2, b"ICC_PROFILE\0\x01\x01fake-profile"), segment(APP14, b"Adobe\0\x64\0\0\0\0\x01")];
    let input = insert_after_soi(&plain, &[metadata_segments(), keep.to_vec()].concat());
    let stripped = strip_jpeg_metadata(&input).expect("strips");
    assert_eq!(stripped, insert_after_soi(&plain, &keep));
    assert_no_metadata(&stripped);
}

#[test]
fn strip_copies_progressive_scans_and_fill_bytes() {
    let rgb = gradient(40, 40);
    let image = turbojpeg::Image {
        pixels: rgb.as_raw().as_slice(),
        width: 40,
        pitch: 120,
        height: 40,
        format: PixelFormat::RGB,
    };
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_progressive(true).expect("progressive");
    let progressive = compressor.compress_to_vec(image).expect("encodes");
    let scans = progressive.windows(2).filter(|w| w == &[0xFF, SOS]).count();
    assert!(scans > 1, "{scans} scans");
    assert_eq!(strip_jpeg_metadata(&progressive).as_deref(), Some(progressive.as_slice()));

    // Fill bytes before a marker are legal and dropped.
    let dqt = progressive.windows(2).position(|w| w == [0xFF, 0xDB]).expect("DQT");
    let padded = [&progressive[..dqt], &[0xFF, 0xFF, 0xFF], &progressive[dqt..]].concat();
    assert_eq!(strip_jpeg_metadata(&padded).as_deref(), Some(progressive.as_slice()));
}

/// The rule `entropy_coded_len` keeps, stated byte pair by byte pair: the data ends at the first
/// FF followed by anything but 00 (a stuffed FF) or a restart marker; an FF as the last byte is
/// not yet a marker. Checked on every sequence of up to seven bytes over the bytes that matter.
#[test]
fn entropy_coded_data_ends_at_its_first_marker() {
    fn by_pairs(data: &[u8]) -> Option<usize> {
        data.windows(2).position(|pair| pair[0] == 0xFF && !matches!(pair[1], 0x00 | 0xD0..=0xD7))
    }
    const BYTES: [u8; 6] = [0x00, 0x12, 0xD0, 0xD7, 0xD9, 0xFF];
    let mut checked = 0;
    for len in 0..=7u32 {
        for mut index in 0..BYTES.len().pow(len) {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let byte = BYTES[index % BYTES.len()];
                    index /= BYTES.len();
                    byte
                })
                .collect();
            assert_eq!(entropy_coded_len(&data), by_pairs(&data), "{data:02X?}");
            checked += 1;
        }
    }
    assert_eq!(checked, (0..=7).map(|len| 6usize.pow(len)).sum::<usize>());
}

#[test]
fn strip_refuses_what_it_should_not_hand_on() {
    let plain = jpeg_q(&gradient(32, 32), 80);
    assert_eq!(strip_jpeg_metadata(&plain[..plain.len() - 2]), None, "no EOI");
    assert_eq!(strip_jpeg_metadata(&plain[..plain.len() / 2]), None, "truncated");
    assert_eq!(strip_jpeg_metadata(b"\xFF\xD8\xFF\xD9"), None, "no scan");
    assert_eq!(strip_jpeg_metadata(b"\xFF\xD8\xFF\xE1\0\x01"), None, "bad length");

    let rgb = gradient(16, 16);
    let image = turbojpeg::Image {
        pixels: rgb.as_raw().as_slice(),
        width: 16,
        pitch: 48,
        height: 16,
        format: PixelFormat::RGB,
    };
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_arithmetic(true).expect("arithmetic");
    let arithmetic = compressor.compress_to_vec(image).expect("encodes");
    assert_eq!(strip_jpeg_metadata(&arithmetic), None, "arithmetic coding");

    let cmyk = cmyk_jpeg(&[0; 16 * 16 * 4], 16, 16, Colorspace::CMYK);
    assert_eq!(strip_jpeg_metadata(&cmyk), None, "4 components");
}

#[test]
fn entropy_coded_data_ends_at_the_first_real_marker() {
    assert_eq!(entropy_coded_len(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xD9]), Some(7));
    assert_eq!(entropy_coded_len(&[0x12, 0xFF, 0xFF, 0xC4]), Some(1));
    assert_eq!(entropy_coded_len(&[0x12, 0xFF, 0x00]), None);
}

// ----- DCT-domain requantisation -----

/// Smooth waves, edges and noise: enough detail for the encoders to differ.
fn photo_like(width: u32, height: u32) -> RgbImage {
    let mut seed = 0x2545_F491u32;
    RgbImage::from_fn(width, height, |x, y| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (seed >> 28) as i32 - 8;
        let wave = ((x as f32 / 23.0).sin() * 50.0 + (y as f32 / 17.0).cos() * 40.0) as i32;
        let edge = if (x / 40 + y / 30) % 2 == 0 { 30 } else { -30 };
        let channel = |base: i32| (base + wave + edge + noise).clamp(0, 255) as u8;
        Rgb([channel(120 + (x / 8) as i32 % 60), channel(100 + (y / 5) as i32 % 80), channel(140)])
    })
}

fn turbo_jpeg_with(img: &RgbImage, quality: i32, subsamp: Subsamp, progressive: bool) -> Vec<u8> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let image =
        turbojpeg::Image { pixels: img.as_raw().as_slice(), width, pitch: width * 3, height, format: PixelFormat::RGB };
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_quality(quality).expect("quality");
    compressor.set_subsamp(subsamp).expect("subsamp");
    compressor.set_progressive(progressive).expect("progressive");
    compressor.compress_to_vec(image).expect("fixture encodes")
}

/// A progressive JPEG with a restart marker every `restart_blocks` MCUs (0: none), through
/// TurboJPEG's own API: the crate's Compressor has no setting for restarts.
fn turbo_progressive_with_restarts(img: &RgbImage, quality: i32, sampling: i32, restart_blocks: i32) -> Vec<u8> {
    use turbojpeg_sys::*;
    let (width, height) = (img.width() as i32, img.height() as i32);
    // SAFETY: the handle is used and destroyed here; the pixels outlive the call; TurboJPEG
    // allocates the output, copied out and freed with tj3Free.
    unsafe {
        let handle = tj3Init(TJINIT_TJINIT_COMPRESS as i32);
        assert!(!handle.is_null());
        for (param, value) in [
            (TJPARAM_TJPARAM_QUALITY, quality),
            (TJPARAM_TJPARAM_SUBSAMP, sampling),
            (TJPARAM_TJPARAM_PROGRESSIVE, 1),
            (TJPARAM_TJPARAM_RESTARTBLOCKS, restart_blocks),
        ] {
            assert_eq!(tj3Set(handle, param as i32, value), 0, "parameter {param}");
        }
        let (mut out, mut size) = (std::ptr::null_mut(), 0);
        let compressed =
            tj3Compress8(handle, img.as_raw().as_ptr(), width, width * 3, height, TJPF_TJPF_RGB, &mut out, &mut size);
        assert_eq!(compressed, 0, "fixture encodes");
        let jpeg = std::slice::from_raw_parts(out, size as usize).to_vec();
        tj3Free(out.cast());
        tj3Destroy(handle);
        jpeg
    }
}

fn turbo_gray_jpeg(gray: &GrayImage, quality: i32) -> Vec<u8> {
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    let image =
        turbojpeg::Image { pixels: gray.as_raw().as_slice(), width, pitch: width, height, format: PixelFormat::GRAY };
    turbojpeg::compress(image, quality, Subsamp::Gray).expect("fixture encodes").to_vec()
}

fn turbo_decode_rgb(jpeg: &[u8]) -> RgbImage {
    let img: turbojpeg::Image<Vec<u8>> = turbojpeg::decompress(jpeg, PixelFormat::RGB).expect("decodes");
    RgbImage::from_raw(img.width as u32, img.height as u32, img.pixels).expect("buffer size")
}

/// Peak signal-to-noise ratio in dB over all samples.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sse: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    10.0 * (255.0f64.powi(2) * a.len() as f64 / sse.max(1e-9)).log10()
}

/// Global SSIM of two luma planes in 8x8 windows (mean over windows), constants of Wang et al.
fn ssim(a: &GrayImage, b: &GrayImage) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (width, height) = a.dimensions();
    let mut total = 0.0;
    let mut windows = 0;
    for wy in (0..height - 7).step_by(4) {
        for wx in (0..width - 7).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in wy..wy + 8 {
                for x in wx..wx + 8 {
                    let (p, q) = (f64::from(a.get_pixel(x, y).0[0]), f64::from(b.get_pixel(x, y).0[0]));
                    (sa, sb, saa, sbb, sab) = (sa + p, sb + q, saa + p * p, sbb + q * q, sab + p * q);
                }
            }
            let (ma, mb) = (sa / 64.0, sb / 64.0);
            let (va, vb, cov) = (saa / 64.0 - ma * ma, sbb / 64.0 - mb * mb, sab / 64.0 - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1;
        }
    }
    total / f64::from(windows)
}

/// Our decode + encode of the same input, for comparison.
fn reencoded(jpeg: &[u8]) -> Vec<u8> {
    encode(&Pixels::Rgb(turbo_decode_rgb(jpeg))).expect("encodes")
}

fn dqt_segments(jpeg: &[u8]) -> Vec<Vec<u8>> {
    header_segments(jpeg).into_iter().filter(|(m, _)| *m == 0xDB).map(|(_, p)| p.to_vec()).collect()
}

fn sof_marker(jpeg: &[u8]) -> Option<u8> {
    header_segments(jpeg).into_iter().map(|(m, _)| m).find(|m| matches!(m, 0xC0..=0xC3 | 0xC9..=0xCB))
}

/// Requantised output against the decoded source, as good as decode + encode's.
fn assert_quality_like_reencoded(input: &[u8], out: &Compressed) {
    let source = turbo_decode_rgb(input);
    let ours = output_pixels(out);
    let theirs = turbo_decode_rgb(&reencoded(input));
    let (psnr_ours, psnr_theirs) = (psnr(ours.as_raw(), source.as_raw()), psnr(theirs.as_raw(), source.as_raw()));
    let luma = |img: &RgbImage| DynamicImage::ImageRgb8(img.clone()).into_luma8();
    let (ssim_ours, ssim_theirs) = (ssim(&luma(&ours), &luma(&source)), ssim(&luma(&theirs), &luma(&source)));
    assert!(psnr_ours >= psnr_theirs - 0.3, "PSNR {psnr_ours:.2} dB vs decode+encode {psnr_theirs:.2} dB");
    assert!(ssim_ours >= ssim_theirs * 0.99, "SSIM {ssim_ours:.4} vs decode+encode {ssim_theirs:.4}");
}

#[test]
fn fine_420_jpeg_is_requantized_with_q50_tables_and_fewer_bytes() {
    let input =
        insert_after_soi(&turbo_jpeg_with(&photo_like(333, 250), 90, Subsamp::Sub2x2, false), &metadata_segments());
    let out = run(&input).expect("compresses");
    assert_eq!(out.path, CodecPath::Requantized);
    assert!(!out.kept_original);
    assert_eq!(out.note(), None);
    assert_eq!((out.width, out.height), (333, 250));
    assert_eq!(output_pixels(&out).dimensions(), (333, 250));
    assert_eq!(sof_marker(&out.jpeg), Some(0xC0), "baseline output");
    let reencoded = reencoded(&input);
    assert_eq!(dqt_segments(&out.jpeg), dqt_segments(&reencoded), "the q50 tables decode + encode writes");
    assert!(out.jpeg.len() < reencoded.len(), "{} >= decode+encode's {}", out.jpeg.len(), reencoded.len());
    assert_quality_like_reencoded(&input, &out);
    assert_no_metadata(&out.jpeg);
}

#[test]
fn both_paths_report_decode_and_encode_times() {
    let requantized = run(&turbo_jpeg_with(&photo_like(200, 150), 90, Subsamp::Sub2x2, false)).expect("compresses");
    let reencoded = run(&encoded(DynamicImage::ImageRgb8(photo_like(200, 150)), ImageFormat::Png)).expect("compresses");
    assert_eq!((requantized.path, reencoded.path), (CodecPath::Requantized, CodecPath::Reencoded));
    for out in [requantized, reencoded] {
        assert!(out.timings.decode > Duration::ZERO && out.timings.encode > Duration::ZERO, "{:?}", out.timings);
    }
}

#[test]
fn progressive_jpeg_is_requantized_to_baseline() {
    let input = turbo_jpeg_with(&photo_like(200, 150), 95, Subsamp::Sub2x2, true);
    assert_eq!(sof_marker(&input), Some(0xC2), "fixture premise");
    let out = run(&input).expect("compresses");
    assert_eq!(out.path, CodecPath::Requantized);
    assert_eq!(sof_marker(&out.jpeg), Some(0xC0));
    assert_eq!((out.width, out.height), (200, 150));
    assert_quality_like_reencoded(&input, &out);
}

#[test]
fn grayscale_jpeg_is_requantized_and_stays_gray() {
    let gray = DynamicImage::ImageRgb8(photo_like(120, 90)).into_luma8();
    let input = turbo_gray_jpeg(&gray, 92);
    let out = run(&input).expect("compresses");
    assert_eq!(out.path, CodecPath::Requantized);
    assert_eq!(output_colorspace(&out), Colorspace::Gray);
    assert_eq!((out.width, out.height), (120, 90));
    let decoded = |jpeg: &[u8]| image::load_from_memory(jpeg).expect("decodes").into_luma8();
    let reencoded = encode(&Pixels::Gray(decoded(&input))).expect("encodes");
    assert_eq!(dqt_segments(&out.jpeg), dqt_segments(&reencoded));
    let (psnr_ours, psnr_theirs) =
        (psnr(decoded(&out.jpeg).as_raw(), gray.as_raw()), psnr(decoded(&reencoded).as_raw(), gray.as_raw()));
    assert!(psnr_ours >= psnr_theirs - 0.5, "PSNR {psnr_ours:.2} dB vs decode+encode {psnr_theirs:.2} dB");
}

#[test]
fn other_jpegs_fall_back_to_decode_and_encode() {
    let photo = photo_like(160, 120);
    // Coarser than q50: requantising would claim precision the file does not have.
    let coarse = turbo_jpeg_with(&photo, 40, Subsamp::Sub2x2, false);
    assert!(requantize::requantize(&coarse, JPEG_QUALITY, 1, 1 << 30).expect("no libjpeg error").is_none());
    assert_ne!(run(&coarse).expect("compresses").path, CodecPath::Requantized);
    // To be turned right, which mirrors the 116 rows (14.5 blocks) left to right: the half block
    // of padding at the bottom would become the left edge.
    let rotated = with_exif_orientation(&turbo_jpeg_with(&photo_like(160, 116), 95, Subsamp::Sub2x2, false), 6);
    let out = run(&rotated).expect("compresses");
    assert_eq!(out.path, CodecPath::Reencoded);
    assert_eq!((out.width, out.height), (116, 160));
}

#[test]
fn q50_jpeg_only_gets_optimised_huffman_tables_and_keeps_its_pixels() {
    let q50 = turbo_jpeg_with(&photo_like(160, 120), 50, Subsamp::Sub2x2, false);
    let out = run(&q50).expect("compresses");
    assert_eq!(out.path, CodecPath::Requantized);
    assert!(out.jpeg.len() < q50.len(), "{} >= {}", out.jpeg.len(), q50.len());
    assert_eq!(turbo_decode_rgb(&out.jpeg), turbo_decode_rgb(&q50), "same coefficients, same pixels");
}

#[test]
fn requantize_survives_damaged_input() {
    let input = turbo_jpeg_with(&photo_like(64, 48), 90, Subsamp::Sub2x2, true);
    assert!(requantize::requantize(&input, JPEG_QUALITY, 1, 1 << 30).expect("fixture").is_some());
    for len in (0..input.len()).step_by(5) {
        let result = requantize::requantize(&input[..len], JPEG_QUALITY, 1, 1 << 30);
        assert!(!matches!(result, Ok(Some(_))), "a {len}-byte prefix was requantised");
        let mut flipped = input.clone();
        flipped[len] ^= 0x5A;
        let _ = requantize::requantize(&flipped, JPEG_QUALITY, 1, 1 << 30);
        let _ = run(&flipped);
    }
    // libjpeg's own memory limit applies: an error, not an abort.
    let big = turbo_jpeg_with(&photo_like(512, 512), 90, Subsamp::Sub2x2, false);
    assert!(requantize::requantize(&big, JPEG_QUALITY, 1, 64 * 1024).is_err());
}

/// Requantisation rounds to nearest; an exact AC tie goes to the smaller magnitude three times
/// in four (fewer bits for the same error) and to the larger one in the fourth (so that tied
/// coefficients do not all shrink), by a hash of the block's DC, the place and the value; DC
/// ties go away from zero (libjpeg's rule). An AC coefficient whose last bit was not read (a
/// skipped refinement scan) is taken half an input step further from zero, the middle of where
/// it can be; a zero stays zero. A flat block (no AC coefficient, every last bit read) is
/// quantised from the whole level a decoder shows it at, as decode + encode does. The C side
/// does it in floats, after clearing the AC coefficients under a threshold per quantiser pair;
/// checked here through that path against exact integer arithmetic over every quantiser pair of
/// a few target quantisers and every 8-bit coefficient value.
#[test]
fn requantized_coefficients_round_to_nearest_and_a_quarter_of_ac_ties_up() {
    use requantize::Coefficient::{Ac, AcLastBitUnread, Dc, DcAcLastBitsUnread, DcOfFlatBlock};
    /// The value rounded, AC ties down; and whether it was an AC tie (which may go up instead).
    fn exact(v: i32, q_in: i32, q_out: i32, kind: requantize::Coefficient) -> (i32, bool) {
        if kind == DcOfFlatBlock {
            // libjpeg's IDCT: the level (v q_in + 4) / 8 rounded down, clamped to 8 bits; its
            // encoder: 8 level / q_out, half away from zero.
            let level = (v * q_in + 4).div_euclid(8).clamp(-128, 127);
            return ((16 * level.abs() + q_out) / (2 * q_out) * level.signum(), false);
        }
        // (|v| + u/2) q_in / q_out + 1/2, u = 1 for an unread last bit, rounded down; at a tie
        // (numerator a multiple of 2 q_out) one less for AC.
        let unread = i32::from(kind == AcLastBitUnread && v != 0);
        let numerator = (2 * v.abs() + unread) * q_in + q_out;
        let mut magnitude = numerator / (2 * q_out);
        let tie = matches!(kind, Ac | AcLastBitUnread) && numerator % (2 * q_out) == 0 && magnitude > 0;
        if tie {
            magnitude -= 1;
        }
        (magnitude * v.signum(), tie)
    }
    let one = |v, q_in, q_out, kind| requantize::requantize_coefficients(&[v], q_in, q_out, kind)[0];
    assert!(matches!(one(5, 1, 10, Ac), 0 | 1), "0.5, AC");
    assert!(matches!(one(-15, 1, 10, Ac), -1 | -2), "-1.5, AC");
    assert_eq!(one(5, 1, 10, Dc), 1, "0.5, DC");
    assert_eq!(one(-15, 1, 10, Dc), -2, "-1.5, DC");
    assert_eq!(one(128, 1, 255, Ac), 1, "1/510 above a tie");
    assert_eq!(one(127, 1, 255, Ac), 0, "1/510 below a tie");
    assert_eq!(one(8, 1, 16, AcLastBitUnread), 1, "8 or 9: 0.53");
    assert!(matches!(one(-4, 1, 9, AcLastBitUnread), 0 | -1), "-4 or -5: -0.5, a tie");
    // q90's DC step 3 against q50's 16 (the corpus' painting): DC 13 is level 4.875, shown as 5
    // and quantised as 2.5 -> 3 by decode + encode, where 39 / 16 = 2.44 rounds to 2.
    assert_eq!(one(13, 3, 16, Dc), 2, "2.44, beside an AC coefficient");
    assert_eq!(one(13, 3, 16, DcOfFlatBlock), 3, "level 5 of a flat block: 2.5");
    assert_eq!(one(13, 3, 16, DcAcLastBitsUnread), 2, "not known to be flat");
    assert_eq!(one(-13, 3, 16, DcOfFlatBlock), -3, "level -5 (-4.875, rounded): -2.5");
    let values: Vec<i32> = (-2047..=2047).collect();
    let (mut ties, mut ties_up) = (0u32, 0u32);
    for q_out in [2, 10, 16, 17, 99, 254, 255] {
        for q_in in 1..=q_out {
            for kind in [Ac, Dc, AcLastBitUnread, DcOfFlatBlock, DcAcLastBitsUnread] {
                let ours = requantize::requantize_coefficients(&values, q_in, q_out, kind);
                for (&v, &got) in values.iter().zip(&ours) {
                    let (down, tie) = exact(v, q_in, q_out, kind);
                    let up = tie && got == down + v.signum();
                    assert!(got == down || up, "v {v}, q_in {q_in}, q_out {q_out}, {kind:?}: {got}, not {down}");
                    ties += u32::from(tie);
                    ties_up += u32::from(up);
                }
            }
        }
    }
    let share_up = f64::from(ties_up) / f64::from(ties);
    assert!(ties > 10_000 && (0.22..0.28).contains(&share_up), "{ties_up} of {ties} ties up");
}

/// The output's blocks (block_store.c) count against the memory bound as libjpeg's arrays do:
/// under it, requantisation fails (the caller then decodes and re-encodes) instead of
/// allocating past it.
#[test]
fn requantisation_keeps_to_its_memory_bound() {
    let photo = photo_like(333, 250);
    for (what, input) in [
        ("baseline", turbo_jpeg_with(&photo, 95, Subsamp::None, false)),
        ("progressive", turbo_jpeg_with(&photo, 95, Subsamp::None, true)),
    ] {
        assert!(requantize::requantize(&input, JPEG_QUALITY, 1, 1 << 30).expect("no error").is_some(), "{what}");
        // The output's 2016 blocks take 16 bytes each before any value; read whole, the input's
        // coefficients take 333 x 250 x 6 bytes. Read in bands, only the store meets the bound.
        let refused = requantize::requantize(&input, JPEG_QUALITY, 1, 16 * 1024);
        assert!(refused.is_err(), "{what}: {:?}", refused.map(|out| out.map(|o| o.jpeg.len())));
    }
}

/// Our progressive reader (csrc/progressive_reader.c) reads what jpeg_read_coefficients reads:
/// the same output bytes for progressive inputs of every subsampling, with restart markers every
/// block, every few blocks or none, turned or not; and on damaged copies it requantises only
/// what libjpeg's reading also takes, to the same bytes.
#[test]
fn progressive_reader_reads_what_libjpeg_reads() {
    let samplings = [
        turbojpeg_sys::TJSAMP_TJSAMP_420,
        turbojpeg_sys::TJSAMP_TJSAMP_422,
        turbojpeg_sys::TJSAMP_TJSAMP_444,
        turbojpeg_sys::TJSAMP_TJSAMP_440,
    ];
    for (width, height) in [(65, 33), (200, 123), (17, 9), (96, 32)] {
        let photo = photo_like(width, height);
        for sampling in samplings {
            for restart_blocks in [0, 1, 7] {
                let input = turbo_progressive_with_restarts(&photo, 97, sampling, restart_blocks);
                for orientation in [1, 6] {
                    let ours = requantize::requantize_every_scan(&input, JPEG_QUALITY, orientation).expect("no error");
                    let theirs = requantize::requantize_with_libjpeg(
                        &input,
                        JPEG_QUALITY,
                        orientation,
                        requantize::Libjpeg::Reader,
                    )
                    .expect("no error");
                    let what = format!(
                        "{width}x{height} sampling {sampling}, restarts every {restart_blocks} blocks, orientation {orientation}"
                    );
                    assert_eq!(ours.is_some(), theirs.is_some(), "{what}");
                    if let (Some(ours), Some(theirs)) = (ours, theirs) {
                        assert!(ours.jpeg == theirs.jpeg, "{what}: {} vs {} bytes", ours.jpeg.len(), theirs.jpeg.len());
                    }
                }
            }
        }
    }
    let input = turbo_progressive_with_restarts(&photo_like(64, 48), 95, turbojpeg_sys::TJSAMP_TJSAMP_422, 3);
    for at in (300..input.len()).step_by(7) {
        let mut damaged = input.clone();
        damaged[at] ^= 0x21;
        let ours = requantize::requantize_every_scan(&damaged, JPEG_QUALITY, 1);
        if let Ok(Some(ours)) = ours {
            let theirs = requantize::requantize_with_libjpeg(&damaged, JPEG_QUALITY, 1, requantize::Libjpeg::Reader);
            let theirs = theirs.ok().flatten().unwrap_or_else(|| panic!("byte {at} damaged: only ours took it"));
            assert!(ours.jpeg == theirs.jpeg, "byte {at} damaged");
        }
    }
}

/// A progressive input's last refinement scans of AC coefficients (Al 0) are skipped where their
/// bit is at most an eighth of the output's quantiser and at most 2 (progressive_reader.c,
/// not_needed): a q99 input's, on q50's tables. Skipping moves the output far less than
/// requantising does, and leaves its distance to the input where it was; where the bit matters
/// (a q75 input: half of q50's steps; a q95 one: quantisers up to 12) every scan is read; and a
/// skipped scan cut short is damage, as a read one is.
#[test]
fn progressive_last_refinements_are_skipped_only_below_the_output_step() {
    let photo = photo_like(200, 123);
    for sampling in
        [turbojpeg_sys::TJSAMP_TJSAMP_420, turbojpeg_sys::TJSAMP_TJSAMP_422, turbojpeg_sys::TJSAMP_TJSAMP_444]
    {
        let fine = turbo_progressive_with_restarts(&photo, 99, sampling, 0);
        let skipped = requantize::requantize(&fine, JPEG_QUALITY, 1, 1 << 30).expect("no error").expect("applies");
        let every = requantize::requantize_every_scan(&fine, JPEG_QUALITY, 1).expect("no error").expect("applies");
        assert!(skipped.jpeg != every.jpeg, "sampling {sampling}: no scan skipped");
        let input = turbo_decode_rgb(&fine);
        let (skipped, every) = (turbo_decode_rgb(&skipped.jpeg), turbo_decode_rgb(&every.jpeg));
        let (to_input, to_input_skipped) = (psnr(&input, &every), psnr(&input, &skipped));
        let between = psnr(&skipped, &every);
        println!(
            "sampling {sampling}: every scan {to_input:.2} dB, skipped {to_input_skipped:.2} dB, between {between:.2} dB"
        );
        assert!(
            between > to_input + 10.0,
            "sampling {sampling}: {between:.2} dB between, {to_input:.2} dB to the input"
        );
        assert!(
            to_input_skipped > to_input - 0.05,
            "sampling {sampling}: {to_input_skipped:.2} against {to_input:.2} dB"
        );

        let cut = &fine[..fine.len() - 50]; // inside the last scan, a luma refinement
        assert!(
            !matches!(requantize::requantize(cut, JPEG_QUALITY, 1, 1 << 30), Ok(Some(_))),
            "sampling {sampling}: cut"
        );

        for quality in [75, 95] {
            let coarse = turbo_progressive_with_restarts(&photo, quality, sampling, 0);
            let read = requantize::requantize(&coarse, JPEG_QUALITY, 1, 1 << 30).expect("no error").expect("applies");
            let every =
                requantize::requantize_every_scan(&coarse, JPEG_QUALITY, 1).expect("no error").expect("applies");
            assert!(read.jpeg == every.jpeg, "sampling {sampling}: a q{quality} input's scan skipped");
        }
    }
}

/// Our Huffman statistics and scan writer (csrc/scan_writer.c) give libjpeg's optimised tables
/// and its encoder's bytes, from the same blocks: byte-identical output, including the dummy
/// blocks of MCUs cut by the right and bottom edges (odd luma block counts), for chroma halved
/// from 4:2:2 and 4:4:4 and for turned outputs.
///
/// And a single-scan JPEG, read in bands (csrc/requantize.c, read_in_bands), gives the same
/// bytes as its lossless progressive copy, the same coefficients read whole, edge blocks and
/// shifted chroma included.
#[test]
fn requantize_statistics_and_scan_match_libjpegs_optimize_coding() {
    let mut to_progressive = turbojpeg::Transform::default();
    to_progressive.progressive = true;
    for (width, height) in [(65, 33), (64, 48), (17, 9), (8, 8), (1, 1), (200, 123), (96, 32), (104, 72), (40, 24)] {
        let photo = photo_like(width, height);
        let gray = DynamicImage::ImageRgb8(photo.clone()).into_luma8();
        let inputs = [
            turbo_jpeg_with(&photo, 90, Subsamp::Sub2x2, false),
            turbo_jpeg_with(&photo, 98, Subsamp::Sub2x2, true),
            turbo_jpeg_with(&photo, 50, Subsamp::Sub2x2, false),
            turbo_gray_jpeg(&gray, 85),
            turbo_jpeg_with(&photo, 92, Subsamp::Sub2x1, false),
            turbo_jpeg_with(&photo, 95, Subsamp::None, true),
            turbo_jpeg_with(&photo, 95, Subsamp::None, false),
            turbo_jpeg_with(&photo, 90, Subsamp::Sub1x2, false),
        ];
        // Turns that mirror no axis apply to any size; the others where the mirrored axis is
        // whole blocks: whole MCUs (64x48, 96x32) or half an MCU over (104x72, 40x24, 8x8).
        let aligned = width % 8 == 0 && height % 8 == 0;
        let orientations: &[u8] = if aligned { &[1, 2, 3, 4, 5, 6, 7, 8] } else { &[1, 5] };
        for (i, input) in inputs.iter().enumerate() {
            let read_whole = (sof_marker(input) != Some(0xC2))
                .then(|| turbojpeg::transform(&to_progressive, input).expect("lossless transform"));
            for &orientation in orientations {
                let ours = requantize::requantize(input, JPEG_QUALITY, orientation, 1 << 30)
                    .expect("no error")
                    .expect("applies");
                let theirs =
                    requantize::requantize_with_libjpeg(input, JPEG_QUALITY, orientation, requantize::Libjpeg::Writer)
                        .expect("no error")
                        .expect("applies");
                assert!(
                    ours.jpeg == theirs.jpeg,
                    "{width}x{height} input {i}, orientation {orientation}: {} vs {} bytes",
                    ours.jpeg.len(),
                    theirs.jpeg.len()
                );
                let upright = if orientation >= 5 { (height, width) } else { (width, height) };
                assert_eq!((ours.width, ours.height), upright);
                if let Some(progressive) = &read_whole {
                    let whole = requantize::requantize_every_scan(progressive, JPEG_QUALITY, orientation)
                        .expect("no error")
                        .expect("applies");
                    assert!(
                        ours.jpeg == whole.jpeg,
                        "{width}x{height} input {i}, orientation {orientation}: read whole"
                    );
                }
            }
        }
    }
}

/// Flat areas come out at the levels decode + encode gives them (flat_level in coefficients.h):
/// 32 x 32 squares of one colour each, their luma and chroma levels stepping through every
/// residue of q90's DC steps, requantised from 4:2:0 (chroma requantised) and 4:4:4 (chroma
/// halved). Each square's middle is an MCU of flat blocks, so its output level must be what a
/// q50 encoder makes of the level the input decodes to there: its DC, 8 level / q, rounded half
/// away from zero, decoded. With the levels taken from the coefficients instead, a third of the
/// odd luma levels went the other way.
#[test]
fn flat_areas_keep_decode_and_encodes_levels() {
    let squares = RgbImage::from_fn(512, 512, |x, y| {
        let square = (y / 32) * 16 + x / 32;
        Rgb([(40 + square / 2) as u8, (60 + square / 3) as u8, (200 - square / 2) as u8])
    });
    // Each plane's sample at the middle of each square (planes of 512 x 512, halved or not).
    let middles = |jpeg: &[u8]| -> Vec<[i32; 3]> {
        let yuv = turbojpeg::decompress_to_yuv(jpeg).expect("decodes");
        let halved = yuv.subsamp == Subsamp::Sub2x2;
        let chroma_width = if halved { 256 } else { 512 };
        let (cb, cr) = (512 * 512, 512 * 512 + chroma_width * chroma_width);
        (0..256)
            .map(|square| {
                let (x, y) = (square % 16 * 32 + 16, square / 16 * 32 + 16);
                let (cx, cy) = if halved { (x / 2, y / 2) } else { (x, y) };
                let at = |plane: usize, width: usize, x: usize, y: usize| i32::from(yuv.pixels[plane + y * width + x]);
                [at(0, 512, x, y), at(cb, chroma_width, cx, cy), at(cr, chroma_width, cx, cy)]
            })
            .collect()
    };
    // q50's DC quantisers, luma and chroma; libjpeg's IDCT of a flat block: (DC q + 4) / 8, floored.
    let q50_level = |level: i32, q: i32| {
        let dc = (16 * (level - 128).abs() + q) / (2 * q) * (level - 128).signum();
        (dc * q + 4).div_euclid(8) + 128
    };
    for subsamp in [Subsamp::Sub2x2, Subsamp::None] {
        let input = turbo_jpeg_with(&squares, 90, subsamp, false);
        let out = run(&input).expect("compresses");
        assert_eq!(out.path, CodecPath::Requantized, "{subsamp:?}");
        for (square, (source, ours)) in middles(&input).into_iter().zip(middles(&out.jpeg)).enumerate() {
            let expected = [q50_level(source[0], 16), q50_level(source[1], 17), q50_level(source[2], 17)];
            assert_eq!(ours, expected, "{subsamp:?}, square {square}: input levels {source:?}");
        }
    }
}
