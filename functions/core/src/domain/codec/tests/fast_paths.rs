//! The requantisation path on the JPEGs people have (issue 14): 4:2:2, 4:4:0 and 4:4:4 inputs
//! brought to 4:2:0, EXIF orientations applied to the blocks, and ICC profiles kept.

use super::*;
use image::ImageEncoder;

/// Our decode + encode of pixels already upright.
fn reencoded_pixels(upright: &RgbImage) -> RgbImage {
    turbo_decode_rgb(&encode(&Pixels::Rgb(upright.clone())).expect("encodes"))
}

/// `ours` against `source`, as close as decode + encode's `theirs`: PSNR over all samples
/// (chroma included) and SSIM of the luma.
fn assert_as_good_as(ours: &RgbImage, theirs: &RgbImage, source: &RgbImage, what: &str) {
    assert_eq!(ours.dimensions(), source.dimensions(), "{what}");
    let (psnr_ours, psnr_theirs) = (psnr(ours.as_raw(), source.as_raw()), psnr(theirs.as_raw(), source.as_raw()));
    let luma = |img: &RgbImage| DynamicImage::ImageRgb8(img.clone()).into_luma8();
    let (ssim_ours, ssim_theirs) = (ssim(&luma(ours), &luma(source)), ssim(&luma(theirs), &luma(source)));
    assert!(psnr_ours >= psnr_theirs - 0.3, "{what}: PSNR {psnr_ours:.2} dB vs decode+encode {psnr_theirs:.2} dB");
    assert!(ssim_ours >= ssim_theirs * 0.99, "{what}: SSIM {ssim_ours:.4} vs decode+encode {ssim_theirs:.4}");
}

fn subsampling(jpeg: &[u8]) -> Subsamp {
    turbojpeg::read_header(jpeg).expect("a JPEG").subsamp
}

#[test]
fn jpegs_with_finer_chroma_than_420_are_requantized_to_420() {
    let cases = [
        (Subsamp::None, false),
        (Subsamp::None, true),
        (Subsamp::Sub2x1, false),
        (Subsamp::Sub2x1, true),
        (Subsamp::Sub1x2, false),
    ];
    // Odd sizes: partial blocks and MCUs at the right and bottom edges.
    for (width, height) in [(333, 250), (64, 48), (17, 9)] {
        let photo = photo_like(width, height);
        for (subsamp, progressive) in cases {
            let what = format!("{width}x{height} {subsamp:?}{}", if progressive { " progressive" } else { "" });
            let input = turbo_jpeg_with(&photo, 92, subsamp, progressive);
            let out = run(&input).expect("compresses");
            assert_eq!(out.path, CodecPath::Requantized, "{what}");
            assert_eq!((out.width, out.height), (width, height), "{what}");
            assert_eq!(subsampling(&out.jpeg), Subsamp::Sub2x2, "{what}: the output is 4:2:0, like Pillow's");
            let source = turbo_decode_rgb(&input);
            let theirs = reencoded(&input);
            assert_eq!(dqt_segments(&out.jpeg), dqt_segments(&theirs), "{what}: the q50 tables");
            assert!(out.jpeg.len() < theirs.len(), "{what}: {} >= decode+encode's {}", out.jpeg.len(), theirs.len());
            assert_as_good_as(&output_pixels(&out), &turbo_decode_rgb(&theirs), &source, &what);
        }
    }
}

/// A flat colour per 16x16 area: the halved chroma of a 4:4:4 input must be that colour, as
/// the box average of decode + encode makes it (no ringing, no shift).
#[test]
fn halved_chroma_keeps_flat_colours() {
    let colours = [[200u8, 30, 40], [20, 180, 60], [40, 60, 220], [250, 240, 20]];
    let tiles = RgbImage::from_fn(64, 32, |x, y| Rgb(colours[((x / 16 + y / 16) % 4) as usize]));
    let out = run(&turbo_jpeg_with(&tiles, 100, Subsamp::None, false)).expect("compresses");
    assert_eq!(out.path, CodecPath::Requantized);
    let pixels = output_pixels(&out);
    for (x, y) in [(8, 8), (24, 8), (40, 8), (56, 8), (8, 24), (24, 24), (40, 24), (56, 24)] {
        assert_near(*pixels.get_pixel(x, y), tiles.get_pixel(x, y).0, 12);
    }
}

/// Every turn of 96x64 (whole MCUs) and of 104x72 (6.5 x 4.5 MCUs: whole blocks, half an MCU
/// over, as a 4000x3000 phone photo's 3000 is 187.5; a mirrored side then starts its chroma half
/// a chroma block into the input's, or one block in where the input's chroma is finer).
#[test]
fn turned_jpegs_take_the_fast_path_and_match_decode_turn_encode() {
    for (width, height) in [(96, 64), (104, 72)] {
        let photo = photo_like(width, height);
        for subsamp in [Subsamp::Sub2x2, Subsamp::Sub2x1, Subsamp::Sub1x2, Subsamp::None] {
            let plain = turbo_jpeg_with(&photo, 92, subsamp, false);
            for orientation in 2..=8u8 {
                let what = format!("{width}x{height} {subsamp:?}, orientation {orientation}");
                let out = run(&with_exif_orientation(&plain, u16::from(orientation))).expect("compresses");
                assert_eq!(out.path, CodecPath::Requantized, "{what}");
                let mut upright = DynamicImage::ImageRgb8(turbo_decode_rgb(&plain));
                upright.apply_orientation(Orientation::from_exif(orientation).expect("1-8"));
                let upright = upright.into_rgb8();
                assert_eq!((out.width, out.height), upright.dimensions(), "{what}");
                assert_as_good_as(&output_pixels(&out), &reencoded_pixels(&upright), &upright, &what);
                assert_no_metadata(&out.jpeg);
            }
        }
    }
}

#[test]
fn turned_grayscale_jpegs_take_the_fast_path() {
    let gray = DynamicImage::ImageRgb8(photo_like(104, 72)).into_luma8(); // whole 8x8 MCUs
    let plain = turbo_gray_jpeg(&gray, 92);
    for orientation in 2..=8u8 {
        let out = run(&with_exif_orientation(&plain, u16::from(orientation))).expect("compresses");
        assert_eq!(out.path, CodecPath::Requantized, "orientation {orientation}");
        assert_eq!(output_colorspace(&out), Colorspace::Gray);
        let mut upright = DynamicImage::ImageLuma8(gray.clone());
        upright.apply_orientation(Orientation::from_exif(orientation).expect("1-8"));
        let decoded = image::load_from_memory(&out.jpeg).expect("decodes").into_luma8();
        assert_eq!((decoded.width(), decoded.height()), (upright.width(), upright.height()));
        let psnr = psnr(decoded.as_raw(), upright.to_luma8().as_raw());
        assert!(psnr > 30.0, "orientation {orientation}: {psnr:.1} dB against the turned source");
    }
}

/// Flat colours in 16x16 tiles, 4 pixels off the block grid (so that colour edges fall inside
/// chroma blocks), turned where the
/// mirrored sides are half an MCU over: well inside each tile our colour is as close to the
/// source's as decode + turn + encode's, so the chroma has not moved by the half block it is
/// shifted by, nor been taken from the wrong half of a block (`turned_jpegs_take_the_fast_path…`
/// measures the whole image, where a misplaced half block costs only a fraction of a dB).
#[test]
fn turns_that_mirror_half_an_mcu_keep_colours_in_place() {
    let colours = [[200u8, 30, 40], [20, 180, 60], [40, 60, 220], [250, 240, 20], [30, 200, 210]];
    let tiles = RgbImage::from_fn(104, 72, |x, y| Rgb(colours[(((x + 4) / 16 + 2 * ((y + 4) / 16)) % 5) as usize]));
    for subsamp in [Subsamp::Sub2x2, Subsamp::Sub2x1, Subsamp::Sub1x2, Subsamp::None] {
        let plain = turbo_jpeg_with(&tiles, 100, subsamp, false);
        for orientation in 2..=8u8 {
            let out = run(&with_exif_orientation(&plain, u16::from(orientation))).expect("compresses");
            assert_eq!(out.path, CodecPath::Requantized, "{subsamp:?}, orientation {orientation}");
            let mut upright = DynamicImage::ImageRgb8(tiles.clone());
            upright.apply_orientation(Orientation::from_exif(orientation).expect("1-8"));
            let upright = upright.into_rgb8();
            let (pixels, theirs) = (output_pixels(&out), reencoded_pixels(&upright));
            let (width, height) = upright.dimensions();
            let inside = |x: u32, y: u32| {
                (x.saturating_sub(5)..(x + 6).min(width)).all(|u| {
                    (y.saturating_sub(5)..(y + 6).min(height))
                        .all(|v| upright.get_pixel(u, v) == upright.get_pixel(x, y))
                })
            };
            for (x, y) in (0..width).flat_map(|x| (0..height).map(move |y| (x, y))).filter(|&(x, y)| inside(x, y)) {
                let want = upright.get_pixel(x, y).0;
                let off =
                    |image: &RgbImage| image.get_pixel(x, y).0.iter().zip(want).map(|(&a, b)| a.abs_diff(b)).max();
                let (ours, decode_encode) = (off(&pixels).unwrap_or(0), off(&theirs).unwrap_or(0));
                // Up to 17 more here (12 on the turns of whole MCUs, 96x64): q50 rounds the
                // requantised and the re-encoded chroma differently near an edge. A half block
                // misplaced or taken from the wrong side measured 233; a step at the padding, 102.
                assert!(
                    u16::from(ours) <= u16::from(decode_encode) + 24,
                    "{subsamp:?}, orientation {orientation}, ({x}, {y}): {:?} for {want:?}, decode + turn + encode {:?}",
                    pixels.get_pixel(x, y).0,
                    theirs.get_pixel(x, y).0
                );
            }
        }
    }
}

/// 100x68 is not whole blocks: a mirrored side would carry a partial block's padding to the
/// other edge. Only the turns that mirror no axis are exact.
#[test]
fn turns_that_would_mirror_a_partial_block_fall_back_to_decode_and_encode() {
    let plain = turbo_jpeg_with(&photo_like(100, 68), 92, Subsamp::None, false);
    for orientation in 1..=8u8 {
        let out = run(&with_exif_orientation(&plain, u16::from(orientation))).expect("compresses");
        let expected = if matches!(orientation, 1 | 5) { CodecPath::Requantized } else { CodecPath::Reencoded };
        assert_eq!(out.path, expected, "orientation {orientation}");
        let upright = if orientation >= 5 { (68, 100) } else { (100, 68) };
        assert_eq!((out.width, out.height), upright, "orientation {orientation}");
    }
}

// ----- ICC profiles -----

/// A profile of `len` bytes for colour space `space` ("RGB ", "GRAY", "CMYK"): a real header
/// layout, filler after it (the codec copies profiles, it does not read them).
fn icc_profile(space: &[u8; 4], len: usize) -> Vec<u8> {
    let mut profile: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    profile[..4].copy_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
    profile[12..16].copy_from_slice(b"mntr");
    profile[16..20].copy_from_slice(space);
    profile[20..24].copy_from_slice(b"XYZ ");
    profile[36..40].copy_from_slice(b"acsp");
    profile
}

/// `jpeg` with `profile` in APP2 segments of at most 60,000 bytes of it each.
fn with_icc_profile(jpeg: &[u8], profile: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = profile.chunks(60_000).collect();
    let segments: Vec<Vec<u8>> = (1..)
        .zip(&chunks)
        .map(|(sequence, chunk)| {
            let mut payload = b"ICC_PROFILE\0".to_vec();
            payload.extend([sequence, chunks.len() as u8]);
            payload.extend(*chunk);
            segment(0xE2, &payload)
        })
        .collect();
    insert_after_soi(jpeg, &segments)
}

fn png_with_profile(pixels: &RgbImage, profile: &[u8]) -> Vec<u8> {
    let mut png = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut png);
    encoder.set_icc_profile(profile.to_vec()).expect("PNG takes profiles");
    DynamicImage::ImageRgb8(pixels.clone()).write_with_encoder(encoder).expect("encodes");
    png
}

fn icc_of(image: &[u8]) -> Option<Vec<u8>> {
    let reader = ImageReader::new(Cursor::new(image)).with_guessed_format().expect("reads");
    reader.into_decoder().expect("decodes").icc_profile().expect("a readable profile")
}

#[test]
fn colour_profiles_are_kept_on_every_path() {
    let rgb = icc_profile(b"RGB ", 3_144);
    let photo = photo_like(96, 64);
    let fine = turbo_jpeg_with(&photo, 92, Subsamp::None, false);
    let cases = [
        ("requantized", with_icc_profile(&fine, &rgb), CodecPath::Requantized),
        ("turned", with_icc_profile(&with_exif_orientation(&fine, 6), &rgb), CodecPath::Requantized),
        ("kept", with_icc_profile(&turbo_jpeg_with(&photo, 30, Subsamp::Sub2x2, false), &rgb), CodecPath::KeptOriginal),
        (
            "re-encoded",
            with_icc_profile(&with_exif_orientation(&turbo_jpeg_with(&photo, 30, Subsamp::Sub2x2, false), 6), &rgb),
            CodecPath::Reencoded,
        ),
        ("png", png_with_profile(&photo, &rgb), CodecPath::Reencoded),
    ];
    for (what, input, path) in cases {
        assert_eq!(icc_of(&input).as_deref(), Some(rgb.as_slice()), "{what}: fixture premise");
        let out = run(&input).expect("compresses");
        assert_eq!(out.path, path, "{what}");
        assert_eq!(icc_of(&out.jpeg).as_deref(), Some(rgb.as_slice()), "{what}");
        assert_no_metadata(&out.jpeg);
    }
}

#[test]
fn a_profile_larger_than_one_segment_is_split_and_reads_back_whole() {
    let large = icc_profile(b"RGB ", 150_000);
    let input = with_icc_profile(&turbo_jpeg_with(&photo_like(96, 64), 92, Subsamp::Sub2x2, false), &large);
    for out in [run(&input).expect("compresses"), run(&with_exif_orientation(&input, 3)).expect("compresses")] {
        let app2 = header_segments(&out.jpeg).into_iter().filter(|(m, _)| *m == 0xE2).count();
        assert_eq!(app2, 3, "150,000 bytes in segments of at most 65,519");
        assert_eq!(icc_of(&out.jpeg).as_deref(), Some(large.as_slice()));
        assert_eq!(header_segments(&out.jpeg)[0].0, 0xE0, "JFIF stays first");
    }
}

#[test]
fn a_profile_of_another_colour_space_is_dropped() {
    let photo = photo_like(96, 64);
    let gray = DynamicImage::ImageRgb8(photo.clone()).into_luma8();
    let gray_jpeg = turbo_gray_jpeg(&gray, 92);
    let cases = [
        (
            "CMYK profile on a colour JPEG",
            turbo_jpeg_with(&photo, 92, Subsamp::Sub2x2, false),
            icc_profile(b"CMYK", 2_000),
        ),
        ("RGB profile on a gray JPEG", gray_jpeg.clone(), icc_profile(b"RGB ", 2_000)),
    ];
    for (what, jpeg, profile) in cases {
        let out = run(&with_icc_profile(&jpeg, &profile)).expect("compresses");
        assert_eq!(out.path, CodecPath::Requantized, "{what}");
        assert_eq!(icc_of(&out.jpeg), None, "{what}");
    }
    let gray_profile = icc_profile(b"GRAY", 500);
    let out = run(&with_icc_profile(&gray_jpeg, &gray_profile)).expect("compresses");
    assert_eq!(icc_of(&out.jpeg).as_deref(), Some(gray_profile.as_slice()), "a gray profile on a gray JPEG");
}

/// Pixels of an RGB `image`, read through `profile`, in BT.2020: wide enough for Adobe RGB and
/// Display P3, so no colour is clipped on the way.
fn in_bt2020(pixels: &RgbImage, profile: &moxcms::ColorProfile) -> Vec<u8> {
    let bt2020 = moxcms::ColorProfile::new_bt2020();
    let transform = profile
        .create_transform_8bit(moxcms::Layout::Rgb, &bt2020, moxcms::Layout::Rgb, moxcms::TransformOptions::default())
        .expect("an RGB matrix profile");
    let mut out = vec![0u8; pixels.as_raw().len()];
    transform.transform(pixels.as_raw(), &mut out).expect("same sizes");
    out
}

fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.len() as f64
}

/// Saturated patches (outside sRGB in both spaces) over a photo: the colours a profile moves
/// most.
fn saturated_photo() -> RgbImage {
    let mut photo = photo_like(96, 64);
    for (i, colour) in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 255]].into_iter().enumerate() {
        for y in 0..32 {
            for x in 0..24 {
                photo.put_pixel(24 * i as u32 + x, y, Rgb(colour));
            }
        }
    }
    photo
}

/// The output's colours, read through its profile, are the input's read through its own: they
/// differ no more than q50 makes the pixels differ (measured: 3.8 of 255 against 4.6 for Adobe
/// RGB), where reading the output as sRGB, as if the profile were dropped, moves them three
/// times further (14.1; 11.4 for Display P3).
#[test]
fn adobe_rgb_and_display_p3_photos_keep_their_colours() {
    let photo = saturated_photo();
    for (name, profile) in
        [("Adobe RGB", moxcms::ColorProfile::new_adobe_rgb()), ("Display P3", moxcms::ColorProfile::new_display_p3())]
    {
        let icc = profile.encode().expect("moxcms writes the profile");
        let plain = turbo_jpeg_with(&photo, 92, Subsamp::None, false);
        let png = png_with_profile(&turbo_decode_rgb(&plain), &icc);
        let inputs = [
            (CodecPath::Requantized, with_icc_profile(&plain, &icc), 1),
            (CodecPath::Requantized, with_icc_profile(&with_exif_orientation(&plain, 6), &icc), 6),
            (CodecPath::Reencoded, png, 1),
        ];
        for (path, input, orientation) in inputs {
            let what = format!("{name}, {path:?}, orientation {orientation}");
            let out = run(&input).expect("compresses");
            assert_eq!(out.path, path, "{what}");
            let profile_out =
                moxcms::ColorProfile::new_from_slice(&icc_of(&out.jpeg).expect("a profile")).expect("parses");
            let mut source = image::load_from_memory(&input).expect("decodes");
            source.apply_orientation(Orientation::from_exif(orientation).expect("1-8"));
            let expected_raw = source.to_rgb8().into_raw();
            let expected = in_bt2020(&source.into_rgb8(), &profile);
            let pixels = output_pixels(&out);
            let kept = mean_abs_difference(&in_bt2020(&pixels, &profile_out), &expected);
            let dropped = mean_abs_difference(&in_bt2020(&pixels, &moxcms::ColorProfile::new_srgb()), &expected);
            let raw = mean_abs_difference(pixels.as_raw(), &expected_raw);
            assert!(kept <= raw * 1.05, "{what}: {kept:.2} of 255 through the profiles, {raw:.2} in the pixels");
            assert!(dropped > 2.0 * kept, "{what}: without the profile {dropped:.2}, with it {kept:.2}");
        }
    }
}

/// Photoshop writes an Adobe marker, without JFIF, into YCbCr JPEGs too (transform 1): those
/// are requantised. Transform 0 says the three components are RGB: decode + encode reads them so.
#[test]
fn an_adobe_marker_saying_ycbcr_keeps_the_fast_path() {
    let plain = without_segments(&turbo_jpeg_with(&photo_like(96, 64), 92, Subsamp::None, false), APP0);
    let adobe = |transform: u8| segment(0xEE, &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, transform]);
    for (transform, path) in [(1, CodecPath::Requantized), (0, CodecPath::Reencoded)] {
        let out = run(&insert_after_soi(&plain, &[adobe(transform)])).expect("compresses");
        assert_eq!(out.path, path, "Adobe transform {transform}");
    }
}
