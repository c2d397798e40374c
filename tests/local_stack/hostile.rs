//! Hostile inputs end to end: URLs that lead inside our network, redirects that go too far or
//! off http, bodies that never end or barely move, files that lie about what they are, pixel
//! bombs, and every real-world image format a catalogue holds; then the CSVs people upload by
//! mistake. Each case asserts its exact outcome, and the request holding it still completes.
//!
//! The URL cases share one request (one URL per row, so row = image index + 1), uploaded
//! once; its retried cases (a trickling server, a 503) take about 40 s to exhaust their five
//! deliveries, which bounds the test's run time.
//!
//! Not here: a host name that resolves to 10.0.0.1 needs DNS we do not control end to end;
//! http_fetch's unit tests cover it with an injected resolver (`names_that_resolve_inside_are_blocked`).
//! Progressive and CMYK JPEGs need libjpeg-turbo to produce, which the test crate does not
//! link; codec.rs's unit tests cover both.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, Luma, Rgb, Rgba};
use imgpipe_core::domain::csv_rules::OUTPUT_HEADER;
use imgpipe_fixtures::jpeg::with_exif_orientation;
use imgpipe_fixtures::png::{palette_png, png_bomb};
use imgpipe_fixtures::{animated_gif, encoded};
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::{cutout_png, photo, photo_jpeg, zip_with};
use imgpipe_tests::hostile_server::chain_image;
use imgpipe_tests::servers::{Files, ImageServer};
use imgpipe_tests::stack::LocalStack;
use serde_json::Value;

use crate::STACK_USE;

/// What must come of one URL.
enum Expected {
    /// Recorded as failed at once with this code.
    Fails(&'static str),
    /// A transient failure, retried on every delivery, then recorded as `retries_exhausted`
    /// with a message containing this.
    GivesUp(&'static str),
    /// Compressed: a JPEG that decodes to this.
    Done(Output),
}

struct Output {
    /// The bytes the server sends, which the worker must count as `bytes_in`.
    source: Vec<u8>,
    size: (u32, u32),
    /// One-component (grayscale) JPEG rather than RGB.
    gray: bool,
    /// A pixel of the output and the colour it must have, within 12 per channel.
    pixel: Option<((u32, u32), [u8; 3])>,
    /// `no_gain` when the input JPEG must be kept because re-encoding would not shrink it.
    note: Option<&'static str>,
}

fn done(source: &[u8], size: (u32, u32)) -> Expected {
    Expected::Done(Output { source: source.to_vec(), size, gray: false, pixel: None, note: None })
}

fn done_gray(source: &[u8], size: (u32, u32)) -> Expected {
    Expected::Done(Output { source: source.to_vec(), size, gray: true, pixel: None, note: None })
}

fn kept_as_is(source: &[u8], size: (u32, u32)) -> Expected {
    Expected::Done(Output { source: source.to_vec(), size, gray: false, pixel: None, note: Some("no_gain") })
}

fn done_with_pixel(source: &[u8], size: (u32, u32), at: (u32, u32), colour: [u8; 3]) -> Expected {
    Expected::Done(Output { source: source.to_vec(), size, gray: false, pixel: Some((at, colour)), note: None })
}

/// The fixtures both image servers hold, by name.
struct Fixtures {
    photo: Vec<u8>,
    small_q30: Vec<u8>,
    small_q10: Vec<u8>,
    rotated: Vec<u8>,
    cutout: Vec<u8>,
    rgb16: Vec<u8>,
    palette: Vec<u8>,
    gray: Vec<u8>,
    gif: Vec<u8>,
    webp: Vec<u8>,
    bmp: Vec<u8>,
    tiff: Vec<u8>,
    truncated_scan: Vec<u8>,
    files: Files,
}

fn fixtures() -> Fixtures {
    let photo_bytes = photo_jpeg(320, 240, 21);
    let mut small_q30 = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut small_q30, 30)
        .encode_image(&photo(200, 150, 22))
        .expect("encode q30 JPEG");
    let mut small_q10 = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut small_q10, 10)
        .encode_image(&photo(200, 150, 22))
        .expect("encode q10 JPEG");
    let rotated = with_exif_orientation(&photo_jpeg(300, 200, 23), 6);
    let cutout = cutout_png(120);
    let rgb16 = encoded(
        DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(64, 40, |x, y| {
            Rgb([(x * 1000) as u16, (y * 1600) as u16, 40_000])
        })),
        ImageFormat::Png,
    );
    let palette = palette_png(48, 16, 255);
    let gray = encoded(image::GrayImage::from_fn(80, 60, |x, y| Luma([(x * 3 + y) as u8])), ImageFormat::Png);
    let gif = animated_gif(32, &[[220, 0, 0], [0, 0, 220], [0, 220, 0]]);
    let webp = encoded(image::RgbaImage::from_pixel(40, 30, Rgba([200, 30, 30, 255])), ImageFormat::WebP);
    let bmp = encoded(DynamicImage::ImageRgb8(photo(50, 40, 24)), ImageFormat::Bmp);
    let tiff = encoded(DynamicImage::ImageRgb8(photo(50, 40, 25)), ImageFormat::Tiff);
    let long = photo_jpeg(256, 192, 26);
    let truncated_scan = long[..long.len() / 2].to_vec();
    let truncated_header = long[..200].to_vec();

    let html = b"<!doctype html><html><head><title>Sign in</title></head><body>Please sign in</body></html>";
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#;
    let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    let json = br#"{"error": "not found", "status": 404}"#;
    let mut files = Files::new();
    let mut add = |name: &str, bytes: &[u8], content_type: &'static str| {
        files.insert(name.to_string(), (bytes.to_vec(), content_type));
    };
    add("photo.jpg", &photo_bytes, "image/jpeg");
    add("photo-really.png", &photo_bytes, "image/png");
    add("small-q30.jpg", &small_q30, "image/jpeg");
    add("small-q10.jpg", &small_q10, "image/jpeg");
    add("rotated.jpg", &rotated, "image/jpeg");
    add("cutout.png", &cutout, "image/png");
    add("rgb16.png", &rgb16, "image/png");
    add("palette.png", &palette, "image/png");
    add("gray.png", &gray, "image/png");
    add("animated.gif", &gif, "image/gif");
    add("lossless.webp", &webp, "image/webp");
    add("photo.bmp", &bmp, "image/bmp");
    add("photo.tiff", &tiff, "image/tiff");
    add("truncated-scan.jpg", &truncated_scan, "image/jpeg");
    add("truncated-header.jpg", &truncated_header, "image/jpeg");
    add("bomb.png", &png_bomb(30_000, 30_000), "image/png");
    add("login.html", html, "text/html");
    add("image.svg", svg, "image/svg+xml");
    add("doc.pdf", pdf, "application/pdf");
    add("error.json", json, "application/json");
    add("photos.zip", &zip_with("photo.jpg", &photo_bytes), "application/zip");
    for (name, (bytes, _)) in &files {
        assert!(bytes.len() < 200 * 1024, "{name} is {} bytes", bytes.len());
    }
    Fixtures {
        photo: photo_bytes,
        small_q30,
        small_q10,
        rotated,
        cutout,
        rgb16,
        palette,
        gray,
        gif,
        webp,
        bmp,
        tiff,
        truncated_scan,
        files,
    }
}

/// Every URL case: (name, URL, expected). `server` is on an allowlisted port, `unlisted` on a
/// loopback port that is not, and serves the same real images: each `blocked_address` case
/// aimed at it would come out DONE if its check were missing.
fn cases(server: &ImageServer, unlisted: &ImageServer, fx: &Fixtures) -> Vec<(&'static str, String, Expected)> {
    use Expected::{Fails, GivesUp};
    let port = unlisted.address.port();
    let allowed_port = server.address.port();
    let image = "img/photo.jpg";
    let typed = |name: &str, content_type: &str| server.url(&format!("typed/{name}?as={content_type}"));
    vec![
        // ----- addresses inside our network -----
        ("loopback port not in the allowlist, serving a real image", unlisted.url(image), Fails("blocked_address")),
        (
            "redirect to a loopback port not in the allowlist",
            server.redirect_url(&unlisted.url(image)),
            Fails("blocked_address"),
        ),
        (
            "redirect to the metadata endpoint",
            server.redirect_url("http://169.254.169.254/latest/meta-data/"),
            Fails("blocked_address"),
        ),
        (
            "metadata endpoint directly",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/".into(),
            Fails("blocked_address"),
        ),
        ("0.0.0.0 (reaches loopback on Linux)", format!("http://0.0.0.0:{port}/{image}"), Fails("blocked_address")),
        ("IPv4-mapped IPv6 loopback", format!("http://[::ffff:127.0.0.1]:{port}/{image}"), Fails("blocked_address")),
        // The unlisted server listens on 127.0.0.1 only: without the check this would be a
        // connect error (retried), still not blocked_address.
        ("IPv6 loopback", format!("http://[::1]:{port}/{image}"), Fails("blocked_address")),
        ("decimal IPv4 loopback", format!("http://2130706433:{port}/{image}"), Fails("blocked_address")),
        ("octal IPv4 loopback", format!("http://0177.0.0.1:{port}/{image}"), Fails("blocked_address")),
        ("hex IPv4 loopback", format!("http://0x7f000001:{port}/{image}"), Fails("blocked_address")),
        ("localhost by name (resolver check)", format!("http://localhost:{port}/{image}"), Fails("blocked_address")),
        (
            "localhost by name on the allowlisted port (the allowlist is exact host:port)",
            format!("http://localhost:{allowed_port}/{image}"),
            Fails("blocked_address"),
        ),
        ("private 10/8", "http://10.0.0.1/a.jpg".into(), Fails("blocked_address")),
        ("private 192.168/16", "http://192.168.0.1/a.jpg".into(), Fails("blocked_address")),
        ("shared 100.64/10", "http://100.64.0.1/a.jpg".into(), Fails("blocked_address")),
        ("unique local fc00::/7", "http://[fc00::1]/a.jpg".into(), Fails("blocked_address")),
        ("link-local fe80::/10", "http://[fe80::1]/a.jpg".into(), Fails("blocked_address")),
        // ----- redirects -----
        ("chain of 3 redirects", server.url("chain/3"), done(chain_image(), (120, 90))),
        ("chain of 4 redirects", server.url("chain/4"), Fails("too_many_redirects")),
        ("relative redirect", server.redirect_url(&format!("/{image}")), done(&fx.photo, (320, 240))),
        ("redirect to file:", server.redirect_url("file:///etc/passwd"), Fails("blocked_scheme")),
        ("redirect to ftp:", server.redirect_url("ftp://127.0.0.1/a.jpg"), Fails("blocked_scheme")),
        (
            "redirect to a URL with credentials",
            server.redirect_url(&format!("http://user:secret@127.0.0.1:{allowed_port}/{image}")),
            Fails("bad_redirect"),
        ),
        // ----- size and time -----
        ("endless body", server.url("endless"), Fails("too_large_bytes")),
        // The body never comes: without the Content-Length check this would time out instead.
        ("Content-Length over the cap", server.url("huge"), Fails("too_large_bytes")),
        ("one byte per second", server.url("trickle"), GivesUp("did not finish")),
        ("HTTP 404", server.url("status/404"), Fails("http_status_404")),
        ("HTTP 410", server.url("status/410"), Fails("http_status_410")),
        ("HTTP 403", server.url("status/403"), Fails("http_status_403")),
        ("HTTP 503", server.url("status/503"), GivesUp("HTTP 503")),
        // ----- content that lies -----
        ("HTML served as image/jpeg", typed("login.html", "image/jpeg"), Fails("not_an_image")),
        ("empty 200 body", server.url("empty"), Fails("not_an_image")),
        ("JSON served as image/png", typed("error.json", "image/png"), Fails("not_an_image")),
        ("ZIP served as image/png", typed("photos.zip", "image/png"), Fails("not_an_image")),
        ("SVG", server.url("img/image.svg"), Fails("unsupported_format")),
        ("PDF served as image/jpeg", typed("doc.pdf", "image/jpeg"), Fails("unsupported_format")),
        ("JPEG cut off in its headers", server.url("img/truncated-header.jpg"), Fails("decode_error")),
        // zune-jpeg decodes what is there (the rest comes out grey), as browsers show it.
        (
            "JPEG cut off half-way through its scan",
            server.url("img/truncated-scan.jpg"),
            done(&fx.truncated_scan, (256, 192)),
        ),
        ("30000 x 30000 PNG header bomb", server.url("img/bomb.png"), Fails("too_many_pixels")),
        // ----- formats that must be accepted -----
        ("baseline JPEG", server.url(image), done(&fx.photo, (320, 240))),
        (
            "small q30 JPEG (re-encoded only if smaller)",
            server.url("img/small-q30.jpg"),
            done(&fx.small_q30, (200, 150)),
        ),
        (
            "tiny q10 JPEG (q50 would be larger: kept)",
            server.url("img/small-q10.jpg"),
            kept_as_is(&fx.small_q10, (200, 150)),
        ),
        ("JPEG with EXIF orientation 6", server.url("img/rotated.jpg"), done(&fx.rotated, (200, 300))),
        ("JPEG served as text/plain", typed("photo.jpg", "text/plain"), done(&fx.photo, (320, 240))),
        (
            "JPEG behind a .png URL, served as image/png",
            server.url("img/photo-really.png"),
            done(&fx.photo, (320, 240)),
        ),
        (
            "PNG with alpha (transparent corner comes out white)",
            server.url("img/cutout.png"),
            done_with_pixel(&fx.cutout, (120, 120), (2, 2), [255, 255, 255]),
        ),
        ("16-bit RGB PNG", server.url("img/rgb16.png"), done(&fx.rgb16, (64, 40))),
        (
            "palette PNG with a transparent index",
            server.url("img/palette.png"),
            done_with_pixel(&fx.palette, (48, 16), (24, 8), [255, 255, 255]),
        ),
        ("grayscale PNG", server.url("img/gray.png"), done_gray(&fx.gray, (80, 60))),
        (
            "animated GIF (first frame)",
            server.url("img/animated.gif"),
            done_with_pixel(&fx.gif, (32, 32), (16, 16), [220, 0, 0]),
        ),
        (
            "lossless WebP",
            server.url("img/lossless.webp"),
            done_with_pixel(&fx.webp, (40, 30), (20, 15), [200, 30, 30]),
        ),
        ("BMP", server.url("img/photo.bmp"), done(&fx.bmp, (50, 40))),
        ("TIFF", server.url("img/photo.tiff"), done(&fx.tiff, (50, 40))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_url_gets_its_exact_outcome_and_the_request_completes() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let fx = fixtures();
    let server = ImageServer::start(fx.files.clone(), Duration::ZERO).await;
    let unlisted = ImageServer::start_unlisted(fx.files.clone(), Duration::ZERO).await;
    let cases = cases(&server, &unlisted, &fx);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    assert_decoy_serves_the_image(&unlisted, &fx.photo).await;

    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (i, (_, url, _)) in cases.iter().enumerate() {
        assert!(!url.contains(','), "one URL per row: {url}");
        csv.push_str(&format!("{},Case {},{url}\n", i + 1, i + 1));
    }
    let started = Instant::now();
    let accepted = api.upload(csv.as_bytes(), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().expect("a request id").to_string();

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(240)).await;
    println!("{} hostile URLs ended their request in {:?}", cases.len(), started.elapsed());
    let page = api.get(&format!("/api/requests/{id}/images?limit=1000")).await.json::<Value>().await.expect("JSON");
    let images = page["images"].as_array().expect("images");
    assert_eq!(images.len(), cases.len(), "{page}");

    let mut failures = Vec::new();
    for (index, ((name, url, expected), image)) in cases.iter().zip(images).enumerate() {
        assert_eq!(image["image_index"].as_u64(), Some(index as u64), "{name}");
        assert_eq!(image["row"].as_u64(), Some(index as u64 + 1), "{name}");
        println!(
            "#{index:>2} {name}: {} {}{}{}",
            image["state"].as_str().unwrap_or("?"),
            image["error_code"].as_str().unwrap_or(""),
            image["bytes_in"].as_u64().map(|n| format!("{n} -> {} bytes", image["bytes_out"])).unwrap_or_default(),
            image["note"].as_str().map(|note| format!(" ({note})")).unwrap_or_default()
        );
        if let Err(problem) = check(&api, image, expected).await {
            failures.push(format!("#{index} {name} ({url}): {problem}\n    got {image}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) wrong:\n{}", failures.len(), failures.join("\n"));

    // The request completed, every image counted, and the output CSV keeps every slot.
    let succeeded = cases.iter().filter(|(_, _, e)| matches!(e, Expected::Done(_))).count() as u64;
    let total = cases.len() as u64;
    assert_eq!(status["status"], "completed_with_errors", "{status}");
    assert_eq!(
        (status["total"].as_u64(), status["succeeded"].as_u64(), status["failed"].as_u64(), status["pending"].as_u64()),
        (Some(total), Some(succeeded), Some(total - succeeded), Some(0)),
        "{status}"
    );
    let output = api.download(status["output_csv_url"].as_str().expect("an output CSV")).await;
    let mut reader = csv::Reader::from_reader(output.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), cases.len());
    for ((name, _, expected), row) in cases.iter().zip(&rows) {
        assert_eq!(row[3].is_empty(), !matches!(expected, Expected::Done(_)), "{name}: {row:?}");
    }
    // Nothing but our own decoy check reached the server on the port outside the allowlist.
    assert_eq!(unlisted.requests(), 4, "a blocked address was connected to");
}

/// The server outside the allowlist really serves the image under the loopback spellings the
/// worker must refuse, so each of those cases would be DONE if its check were missing. (The
/// test then asserts the worker added no request to these four.)
async fn assert_decoy_serves_the_image(unlisted: &ImageServer, photo: &[u8]) {
    let port = unlisted.address.port();
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    for url in [
        unlisted.url("img/photo.jpg"),
        format!("http://0.0.0.0:{port}/img/photo.jpg"),
        format!("http://localhost:{port}/img/photo.jpg"),
        format!("http://2130706433:{port}/img/photo.jpg"),
    ] {
        let response = client.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.bytes().await.expect("body"), photo, "{url}");
    }
}

/// Whether one image's result is what its case expects; the output is downloaded and decoded.
async fn check(api: &ApiClient, image: &Value, expected: &Expected) -> Result<(), String> {
    let state = image["state"].as_str().unwrap_or("?");
    let code = image["error_code"].as_str();
    let message = image["error_message"].as_str().unwrap_or("");
    match expected {
        Expected::Fails(expected_code) => {
            if (state, code) != ("FAILED", Some(*expected_code)) {
                return Err(format!("expected FAILED {expected_code}, got {state} {code:?}: {message}"));
            }
        }
        Expected::GivesUp(fragment) => {
            if (state, code) != ("FAILED", Some("retries_exhausted"))
                || !message.starts_with("gave up after the last attempt")
                || !message.contains(fragment)
            {
                return Err(format!("expected retries_exhausted with {fragment:?}, got {state} {code:?}: {message}"));
            }
        }
        Expected::Done(output) => {
            if state != "DONE" {
                return Err(format!("expected DONE, got {state} {code:?}: {message}"));
            }
            return check_output(api, image, output).await;
        }
    }
    if !image["output_url"].is_null() {
        return Err("a failed image has an output URL".into());
    }
    Ok(())
}

async fn check_output(api: &ApiClient, image: &Value, expected: &Output) -> Result<(), String> {
    let bytes_in = image["bytes_in"].as_u64();
    if bytes_in != Some(expected.source.len() as u64) {
        return Err(format!("bytes_in {bytes_in:?}, the server sent {}", expected.source.len()));
    }
    let url = image["output_url"].as_str().ok_or("no output_url")?;
    let jpeg = api.download(url).await;
    if image["bytes_out"].as_u64() != Some(jpeg.len() as u64) {
        return Err(format!("bytes_out {} but the output has {} bytes", image["bytes_out"], jpeg.len()));
    }
    if image::guess_format(&jpeg).ok() != Some(ImageFormat::Jpeg) {
        return Err("the output is not a JPEG".into());
    }
    // A JPEG input is never stored larger than it came (the original is kept: `no_gain`).
    let jpeg_input = expected.source.starts_with(&[0xFF, 0xD8, 0xFF]);
    if jpeg_input && jpeg.len() > expected.source.len() {
        return Err(format!(
            "output {} bytes > input {} bytes (note {})",
            jpeg.len(),
            expected.source.len(),
            image["note"]
        ));
    }
    if image["note"].as_str() != expected.note {
        return Err(format!("note {}, expected {:?}", image["note"], expected.note));
    }
    let decoded = image::load_from_memory(&jpeg).map_err(|e| format!("the output does not decode: {e}"))?;
    if (decoded.width(), decoded.height()) != expected.size {
        return Err(format!("output is {}x{}, expected {:?}", decoded.width(), decoded.height(), expected.size));
    }
    let gray = matches!(decoded, DynamicImage::ImageLuma8(_));
    if gray != expected.gray {
        return Err(format!("output colour type {:?}, expected gray: {}", decoded.color(), expected.gray));
    }
    if let Some(((x, y), colour)) = expected.pixel {
        let actual = decoded.to_rgb8().get_pixel(x, y).0;
        if actual.iter().zip(colour).any(|(&a, e)| a.abs_diff(e) > 12) {
            return Err(format!("pixel ({x}, {y}) is {actual:?}, expected {colour:?}"));
        }
    }
    Ok(())
}

// ----- CSV-level cases: refused at upload with a reason the uploader can act on -----

/// Uploads `csv` and returns its problems, asserting a 422 `invalid_csv`.
async fn problems_of(csv: &[u8]) -> Vec<Value> {
    let api = ApiClient::new(LocalStack::shared());
    let _in_flight = STACK_USE.read().await;
    let answer = api.upload(csv, None).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (422, Some("invalid_csv")), "{}", answer.body);
    assert!(answer.body.get("request_id").is_none());
    answer.body["problems"].as_array().expect("problems").clone()
}

fn has_problem(problems: &[Value], line: Option<u64>, fragment: &str) -> bool {
    problems.iter().any(|p| p["line"].as_u64() == line && p["message"].as_str().is_some_and(|m| m.contains(fragment)))
}

#[tokio::test]
async fn a_url_with_a_user_and_password_is_refused_at_upload() {
    let csv = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.jpg\n\
        2,Shoe,\"https://img.example/b.jpg, https://user:secret@img.example/c.jpg\"\n";
    let problems = problems_of(csv.as_bytes()).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(has_problem(&problems, Some(3), "URL 2 of 2"), "{problems:?}");
    assert!(has_problem(&problems, Some(3), "user name or password"), "{problems:?}");
    assert_eq!(problems[0]["column"], 3);
}

#[tokio::test]
async fn a_zip_uploaded_as_the_csv_is_not_a_csv() {
    let zip = zip_with("products.csv", b"S. No.,Product Name,Input Image Urls\n");
    let problems = problems_of(&zip).await;
    assert!(has_problem(&problems, None, "not a CSV file"), "{problems:?}");
    assert!(has_problem(&problems, None, "ZIP"), "{problems:?}");
}

#[tokio::test]
async fn a_latin_1_csv_is_refused_naming_the_line() {
    let csv = b"S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.jpg\n2,Caf\xe9 cup,https://img.example/b.jpg\n";
    let problems = problems_of(csv).await;
    assert!(has_problem(&problems, None, "not UTF-8"), "{problems:?}");
    assert!(has_problem(&problems, None, "line 3"), "{problems:?}");
}

#[tokio::test]
async fn a_header_only_csv_is_refused() {
    let problems = problems_of(b"S. No.,Product Name,Input Image Urls\r\n\r\n").await;
    assert!(has_problem(&problems, None, "no data rows"), "{problems:?}");
}

#[tokio::test]
async fn duplicate_serial_numbers_are_refused() {
    let csv =
        "S. No.,Product Name,Input Image Urls\n7,Shirt,https://img.example/a.jpg\n7,Shoe,https://img.example/b.jpg\n";
    let problems = problems_of(csv.as_bytes()).await;
    assert!(has_problem(&problems, Some(3), "already used on line 2"), "{problems:?}");
}

/// BOM, CRLF, `Serial Number`, an extra column, a quoted URL list with spaces, trailing blank
/// lines and a product name that a spreadsheet would run as a formula: accepted, and the
/// formula comes out neutralised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_but_valid_csv_is_accepted_and_its_formula_neutralised() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([
        ("a.jpg".to_string(), (photo_jpeg(200, 150, 31), "image/jpeg")),
        ("b.png".to_string(), (cutout_png(64), "image/png")),
    ]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let csv = format!(
        "\u{feff}Serial Number,Product Name,Supplier,Input Image Urls\r\n\
         1,\"=HYPERLINK(\"\"http://evil.example\"\")\",Acme,\" {} ,  {} \"\r\n\
         2,Plain mug,Acme,{}\r\n\r\n\r\n,,,\r\n",
        server.url("img/a.jpg"),
        server.url("img/b.png"),
        server.url("img/a.jpg"),
    );
    let accepted = api.upload(csv.as_bytes(), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["images"], 3);
    let id = accepted.body["request_id"].as_str().unwrap();

    let (status, _) = api.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
    let output = api.download(status["output_csv_url"].as_str().unwrap()).await;
    let mut reader = csv::Reader::from_reader(output.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), OUTPUT_HEADER, "the extra column is dropped");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "blank lines are not rows");
    assert_eq!(&rows[0][1], "'=HYPERLINK(\"http://evil.example\")", "the formula is shown as text");
    assert_eq!(rows[0][3].split(',').filter(|s| !s.is_empty()).count(), 2, "{:?}", &rows[0][3]);
    assert_eq!((&rows[1][0], &rows[1][1]), ("2", "Plain mug"));
}
