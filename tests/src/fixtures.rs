//! Real image bytes for tests, made here so nothing is downloaded: photo-like JPEGs (smooth
//! gradients with grain, as cameras produce), PNGs with real transparency, and a ZIP. What
//! core's unit tests also use is in `imgpipe_fixtures`.

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use imgpipe_fixtures::{crc32, encoded};

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
    encoded(image, ImageFormat::Png)
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
