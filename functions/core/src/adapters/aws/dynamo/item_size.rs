//! The largest items the limits allow, sized by DynamoDB's rules, against its 400 KB item limit.
//!
//! The items are made by the adapter's own `request_item` and `result_item`, so an attribute
//! added there is counted here. The sizes (docs/api.md, "Limits") are printed with `--nocapture`.

use chrono::{TimeZone, Utc};

use super::*;
use crate::domain::csv_rules::{CsvLimits, CsvRejection, MAX_URL_LENGTH_CEILING, ValidatedCsv};
use crate::domain::fetch_jobs::MAX_RESULTS_PER_WRITE;
use crate::domain::http_url::HttpUrl;
use crate::domain::locations::{output_csv_key, output_image_key};
use crate::domain::upload_reservation::{UploadRefusal, UploadReservation};
use crate::test_support::tenant;

/// DynamoDB refuses an item over 400 KB: attribute names and values together.
const ITEM_LIMIT: usize = 400 * 1024;

/// An item's size by the rules of "DynamoDB item sizes and formats" (Amazon DynamoDB
/// Developer Guide): each attribute's name in UTF-8 bytes plus its value's size.
fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|bytes| bytes.as_ref().len()).sum(),
        // 3 bytes per list or map, 1 per element.
        AttributeValue::L(values) => 3 + values.iter().map(|value| 1 + value_size(value)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(name, value)| 1 + name.len() + value_size(value)).sum::<usize>(),
        other => panic!("an attribute type this helper does not size: {other:?}"),
    }
}

/// 1 byte per two significant digits (leading and trailing zeroes are not stored) plus 1;
/// rounded up, and 1 more for a minus sign, so that it never counts less than DynamoDB does.
fn number_size(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1 + usize::from(number.starts_with('-'))
}

fn table() -> DynamoTable {
    let config = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
    DynamoTable::new(&config, "imgpipe-table", Duration::from_secs(30 * 24 * 3600))
}

/// An absolute URL of exactly `length` characters, as stored (ASCII).
fn url_of_length(base: &str, length: usize) -> HttpUrl {
    let url = HttpUrl::parse(&format!("{base}{}", "u".repeat(length - base.len()))).unwrap();
    assert_eq!(url.as_str().len(), length);
    url
}

/// The request item with every optional attribute set, counters at their widest, a webhook
/// URL of `url_length` characters and the longer of the two `open_shard` values.
fn largest_request_item(url_length: usize) -> Item {
    let id = RequestId::new_random();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 15, 41).unwrap();
    let webhook_url = url_of_length("https://hooks.example/", url_length);
    let mut request = RequestRecord::new(id, tenant(), u64::MAX, Some(webhook_url), now);
    request.status = RequestStatus::CompletedWithErrors;
    (request.remaining, request.succeeded, request.failed) = (u64::MAX, u64::MAX, u64::MAX);
    (request.cancelled, request.carried_over, request.retry_of) = (u64::MAX, u64::MAX, Some(RequestId::new_random()));
    request.completed_at = Some(now);
    request.output_csv_key = Some(output_csv_key(&request.tenant_id, id));
    request.webhook_failed_deliveries = u32::MAX;
    request.webhook_next_at = Some(now);
    request.failure_reason = FinalState::failed(&request, &"x".repeat(1 << 20), now).failure_reason;
    request.sweep_failures = u32::MAX;
    let mut item = table().request_item(&request).unwrap();
    item.insert("open_shard".into(), s(WEBHOOK_SHARD));
    item
}

/// The larger of a DONE and a FAILED image item, for an input URL of `url_length` characters
/// and a failure message of a megabyte (a transfer error can quote a server at any length).
fn largest_image_item(url_length: usize) -> Item {
    let id = RequestId::new_random();
    let job = ImageJob {
        tenant_id: tenant(),
        request_id: id,
        image_index: u32::MAX,
        row: u32::MAX,
        url: url_of_length("https://img.example/", url_length),
    };
    let done = ImageOutcome::Done {
        output_key: output_image_key(&tenant(), id, u32::MAX),
        bytes_in: u64::MAX,
        bytes_out: u64::MAX,
        note: Some("no_gain"),
    };
    let failed = ImageOutcome::Failed {
        error_code: "too_many_redirects".into(),
        error_message: format!("the download failed: {}", "é".repeat(500_000)),
    };
    let now = Utc::now();
    let items = [done, failed].map(|outcome| table().result_item(&job, &outcome, now).unwrap());
    items.into_iter().max_by_key(item_size).unwrap()
}

/// A reserved upload's item with the largest refusal the rules make: the 200 problems listed
/// (and the count of the rest) of a CSV whose every row has two URLs over the length limit,
/// each quoted in its message, and a webhook URL of `url_length` characters.
fn largest_reservation_item(url_length: usize) -> Item {
    let long_url = format!("https://img.example/{}", "é".repeat(url_length));
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for row in 0..500 {
        csv.push_str(&format!("{row},{},\"{long_url}, {long_url}\"\n", "p".repeat(5_000)));
    }
    let Err(CsvRejection::Invalid(problems)) = ValidatedCsv::parse(csv.as_bytes(), &CsvLimits::bucket()) else {
        panic!("the CSV breaks the rules");
    };
    assert!(problems.len() > 200, "every problem listed is kept: {}", problems.len());
    let webhook_url = url_of_length("https://hooks.example/", url_length);
    let mut reservation = UploadReservation::new(tenant(), Some(webhook_url), Utc::now(), Duration::from_secs(3600));
    reservation.refusal = Some(UploadRefusal { error: "invalid_csv".into(), message: "x".repeat(200), problems });
    table().reservation_item(&reservation).unwrap()
}

#[test]
fn item_size_follows_the_documented_rules() {
    let item = Item::from([
        ("id".into(), s("abc")),                                                // 2 + 3
        ("n".into(), AttributeValue::N("-120.50".into())),                      // 1 + 2 + 1 + 1
        ("ok".into(), AttributeValue::Bool(true)),                              // 2 + 1
        ("l".into(), AttributeValue::L(vec![s("ab"), n(7)])),                   // 1 + 3 + (1 + 2) + (1 + 2)
        ("m".into(), AttributeValue::M(HashMap::from([("k".into(), s("v"))]))), // 1 + 3 + 1 + 1 + 1
    ]);
    assert_eq!(item_size(&item), 5 + 5 + 3 + 10 + 7);
    assert_eq!(number_size("0"), 2);
    assert_eq!(number_size("1000"), 2);
    assert_eq!(number_size("18446744073709551615"), 11);
}

#[test]
fn the_largest_items_the_limits_allow_fit_dynamodb_with_room_to_spare() {
    let limits = [
        (CsvLimits::default().max_url_length, "the default MAX_URL_LENGTH"),
        (MAX_URL_LENGTH_CEILING, "MAX_URL_LENGTH's ceiling"),
    ];
    for (url_length, what) in limits {
        let request = item_size(&largest_request_item(url_length));
        let image = item_size(&largest_image_item(url_length));
        let reservation = item_size(&largest_reservation_item(url_length));
        println!(
            "URL limit {url_length} ({what}): request item {request} bytes, image item {image} bytes, \
             reservation item {reservation} bytes"
        );
        // Ten times under the limit: room for attributes added later, and for DynamoDB's
        // rounding, which these rules only approximate for numbers.
        for (item, size) in [("request", request), ("image", image)] {
            assert!(size * 10 < ITEM_LIMIT, "{item} item of {size} bytes with {what}");
        }
        // Its problems are at most 200 (and a count), each quoting at most 100 characters:
        // bounded, but larger; four times under the limit.
        assert!(reservation * 4 < ITEM_LIMIT, "reservation item of {reservation} bytes with {what}");
    }
}

#[test]
fn a_write_of_the_most_results_at_the_largest_items_fits_a_transaction() {
    // DynamoDB refuses a transaction over 4 MB of items (and 100 actions: the results and the
    // request's counters).
    const TRANSACTION_LIMIT: usize = 4 * 1024 * 1024;
    let image = item_size(&largest_image_item(MAX_URL_LENGTH_CEILING));
    let request = item_size(&largest_request_item(MAX_URL_LENGTH_CEILING));
    let write = MAX_RESULTS_PER_WRITE * image + request;
    println!("{MAX_RESULTS_PER_WRITE} results of {image} bytes and the request item: {write} bytes");
    assert!(write * 2 < TRANSACTION_LIMIT, "{write} bytes");
}
