//! Real image bytes for tests, made here so nothing is downloaded: photo-like JPEGs (smooth
//! gradients with grain, as cameras produce) and PNGs with real transparency.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// A deterministic photo-like image; `seed` varies the scene.
pub fn photo(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut grain = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 17) as i32 - 8
    };
    let tint = (seed % 7) as f32 * 20.0;
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = ((fx * 11.0 + tint).sin() * (fy * 7.0).cos() * 40.0) as i32;
        let g = grain();
        let channel = |base: f32| (base as i32 + wave + g).clamp(0, 255) as u8;
        Rgb([channel(60.0 + 150.0 * fx + tint), channel(90.0 + 120.0 * fy), channel(200.0 - 120.0 * fx * fy)])
    })
}

/// A JPEG as a camera or a catalogue tool would save it: high quality, so q50 is smaller.
pub fn photo_jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
        .encode_image(&photo(width, height, seed))
        .expect("encode fixture JPEG");
    bytes
}

/// A product cut-out: an opaque shaded disc, a soft edge, and a fully transparent background
/// whose hidden colour is black (what a naive RGBA -> RGB conversion would show).
pub fn cutout_png(size: u32) -> Vec<u8> {
    let centre = size as f32 / 2.0;
    let image = RgbaImage::from_fn(size, size, |x, y| {
        let distance = ((x as f32 - centre).powi(2) + (y as f32 - centre).powi(2)).sqrt() / centre;
        match distance {
            d if d < 0.7 => Rgba([(220.0 * (1.0 - d / 2.0)) as u8, 40, 90, 255]),
            d if d < 0.8 => Rgba([200, 40, 90, ((0.8 - d) * 10.0 * 255.0) as u8]),
            _ => Rgba([0, 0, 0, 0]),
        }
    });
    encode(image, ImageFormat::Png)
}

pub fn encode(image: impl Into<DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.into().write_to(&mut Cursor::new(&mut bytes), format).expect("encode fixture");
    bytes
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len()).expect("a small chunk").to_be_bytes().to_vec();
    chunk.extend(kind);
    chunk.extend(data);
    chunk.extend(crc32(&chunk[4..]).to_be_bytes());
    chunk
}

/// CRC-32 (IEEE), as PNG and ZIP use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(65535).collect() };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

/// A pixel bomb: a PNG of about 100 bytes whose header declares `width` x `height` 8-bit
/// grayscale pixels, with a tiny IDAT. Only a header check stops it before allocation.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, adaptive filters, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &zlib_stored(&[0, 0, 0, 0])));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// An indexed-colour PNG (which `image` cannot write): vertical stripes of opaque red, fully
/// transparent black and opaque blue, one third of the width each.
pub fn palette_png(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 3, 0, 0, 0]); // 8-bit palette indices
    let mut rows = Vec::new();
    for _ in 0..height {
        rows.push(0); // filter: none
        rows.extend((0..width).map(|x| (x * 3 / width) as u8));
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"PLTE", &[255, 0, 0, 0, 0, 0, 0, 0, 255]));
    png.extend(png_chunk(b"tRNS", &[255, 0, 255]));
    png.extend(png_chunk(b"IDAT", &zlib_stored(&rows)));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// `jpeg` with an APP1 Exif segment (big-endian TIFF, one IFD entry: Orientation) spliced in
/// after SOI, as a phone writes it.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let mut payload = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    payload.extend(orientation.to_be_bytes());
    payload.extend([0, 0, 0, 0, 0, 0]); // value padding, then "no next IFD"
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(u16::try_from(payload.len() + 2).expect("a small segment").to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// An animated GIF: one `size` x `size` frame per colour, in order.
pub fn animated_gif(size: u32, colours: &[[u8; 3]]) -> Vec<u8> {
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        encoder.set_repeat(image::codecs::gif::Repeat::Infinite).expect("repeat");
        let frames =
            colours.iter().map(|&[r, g, b]| image::Frame::new(RgbaImage::from_pixel(size, size, Rgba([r, g, b, 255]))));
        encoder.encode_frames(frames).expect("encode fixture GIF");
    }
    gif
}

/// A ZIP archive with one stored file, such as what an .xlsx or a zipped image folder starts as.
pub fn zip_with(name: &str, content: &[u8]) -> Vec<u8> {
    let crc = crc32(content).to_le_bytes();
    let size = u32::try_from(content.len()).expect("a small file").to_le_bytes();
    let name_len = u16::try_from(name.len()).expect("a short name").to_le_bytes();
    let mut zip = b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0".to_vec(); // version, flags, stored, time, date
    zip.extend(crc);
    zip.extend(size);
    zip.extend(size);
    zip.extend(name_len);
    zip.extend([0, 0]);
    zip.extend(name.as_bytes());
    zip.extend(content);
    let directory_at = u32::try_from(zip.len()).expect("small").to_le_bytes();
    let mut directory = b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0".to_vec();
    directory.extend(crc);
    directory.extend(size);
    directory.extend(size);
    directory.extend(name_len);
    directory.extend([0; 12]); // extra, comment, disk, attributes
    directory.extend([0, 0, 0, 0]); // offset of the local header
    directory.extend(name.as_bytes());
    let directory_len = u32::try_from(directory.len()).expect("small").to_le_bytes();
    zip.extend(&directory);
    zip.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    zip.extend(directory_len);
    zip.extend(directory_at);
    zip.extend([0, 0]);
    zip
}
