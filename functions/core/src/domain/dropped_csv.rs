//! CSVs dropped into the bucket under `incoming/`: which created objects are CSVs to accept,
//! how S3's notification names them, and the request id and receipt each one gets.

use aws_lambda_events::s3::S3Event;
use sha2::{Digest, Sha256};

use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// Where a CSV must be dropped (and end in `.csv`) to be processed.
pub const INCOMING_PREFIX: &str = "incoming/";
/// Where the receipt of `incoming/<name>.csv` is written, as `<name>.json`.
pub const RECEIPTS_PREFIX: &str = "receipts/";

/// Whether an object created under `key` is a CSV to accept: under `incoming/`, named `.csv`.
/// (The bucket's notification filters the same way; this holds if it is set up wider.)
pub fn is_dropped_csv(key: &str) -> bool {
    key.starts_with(INCOMING_PREFIX) && key.ends_with(".csv")
}

/// One version of an object created under `incoming/`, as its S3 event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedCsv {
    pub bucket: String,
    /// Decoded (events carry the key URL-encoded).
    pub key: String,
    pub size: u64,
    /// The event's `sequencer`, which tells this version from any other under the same key.
    pub version: String,
}

impl DroppedCsv {
    /// The same for every delivery of this version's event, so a redelivered event finds the
    /// request the first delivery made instead of making a second one. SHA-256 of bucket, key
    /// and sequencer, as a version-8 UUID: not guessable from the file name alone.
    pub fn request_id(&self) -> RequestId {
        let digest = Sha256::new()
            .chain_update(self.bucket.as_bytes())
            .chain_update([0])
            .chain_update(self.key.as_bytes())
            .chain_update([0])
            .chain_update(self.version.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        RequestId::from_bytes_v8(bytes)
    }

    /// The tenant the key names: `incoming/<tenant>/<name>.csv`. The reason for the receipt
    /// when it names none.
    pub fn tenant(&self) -> Result<TenantId, String> {
        let name = self.key.strip_prefix(INCOMING_PREFIX).unwrap_or(&self.key);
        let Some((tenant, _)) = name.split_once('/') else {
            return Err("no tenant named: drop CSVs under incoming/<your tenant>/".into());
        };
        tenant.parse().map_err(|error: crate::domain::tenant::InvalidTenantId| error.to_string())
    }

    /// `incoming/a/b.csv` -> `receipts/a/b.json`.
    pub fn receipt_key(&self) -> String {
        let name = self.key.strip_prefix(INCOMING_PREFIX).unwrap_or(&self.key);
        let stem = name.strip_suffix(".csv").unwrap_or(name);
        format!("{RECEIPTS_PREFIX}{stem}.json")
    }
}

/// The CSVs an S3 event notification (the body of a jobs-queue message) names under
/// `incoming/`; `None` when the body is not an S3 notification. S3's test message (sent when the
/// notification is configured) names none; only `ObjectCreated:*` records count.
pub fn dropped_csvs_in(notification: &str) -> Option<Vec<DroppedCsv>> {
    let value: serde_json::Value = serde_json::from_str(notification).ok()?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Some(Vec::new());
    }
    let event: S3Event = serde_json::from_value(value).ok()?;
    let dropped = event
        .records
        .into_iter()
        .filter(|record| record.event_name.as_deref().is_some_and(|name| name.starts_with("ObjectCreated:")))
        .filter_map(|record| {
            // Keys arrive URL-encoded, spaces as '+'.
            let key = url::form_urlencoded::parse(record.s3.object.key?.as_bytes()).next()?.0.into_owned();
            let csv = DroppedCsv {
                bucket: record.s3.bucket.name?,
                size: record.s3.object.size.unwrap_or(0) as u64,
                version: record.s3.object.sequencer.or(record.s3.object.e_tag).unwrap_or_default(),
                key,
            };
            is_dropped_csv(&csv.key).then_some(csv)
        })
        .collect();
    Some(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_csv_names_its_tenant_by_its_folder() {
        let dropped = |key: &str| DroppedCsv { bucket: "b".into(), key: key.into(), size: 1, version: "1".into() };
        assert_eq!(dropped("incoming/acme/spring/shirts.csv").tenant(), Ok("acme".parse().unwrap()));
        assert!(dropped("incoming/shirts.csv").tenant().unwrap_err().contains("no tenant named"));
        assert!(dropped("incoming/Acme Corp/shirts.csv").tenant().unwrap_err().contains("not a tenant id"));
    }

    #[test]
    fn only_csvs_under_incoming_are_dropped_csvs() {
        assert!(is_dropped_csv("incoming/products.csv") && is_dropped_csv("incoming/a/b.csv"));
        for key in ["incoming/notes.txt", "receipts/products.csv", "products.csv", "incoming/products.csv.bak"] {
            assert!(!is_dropped_csv(key), "{key}");
        }
    }

    fn notification(event_name: &str, key: &str) -> String {
        // As S3 sends it (aws_lambda_events' example event).
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-30T00:00:00.123Z", "eventName": event_name,
            "userIdentity": {"principalId": "EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "incoming-csv",
                "bucket": {"name": "bucket", "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": "arn:aws:s3:::bucket"},
                "object": {"key": key, "size": 42, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6"}
            }
        }]})
        .to_string()
    }

    #[test]
    fn a_notification_names_its_created_csvs_with_decoded_keys() {
        let dropped = dropped_csvs_in(&notification("ObjectCreated:Put", "incoming/spring+shirts%282%29.csv")).unwrap();
        let expected = DroppedCsv {
            bucket: "bucket".into(),
            key: "incoming/spring shirts(2).csv".into(),
            size: 42,
            version: "0055AED6".into(),
        };
        assert_eq!(dropped, [expected]);
    }

    #[test]
    fn other_events_keys_and_messages_name_no_csv() {
        assert_eq!(dropped_csvs_in(&notification("ObjectRemoved:Delete", "incoming/a.csv")), Some(vec![]));
        assert_eq!(dropped_csvs_in(&notification("ObjectCreated:Put", "receipts/a.json")), Some(vec![]));
        assert_eq!(dropped_csvs_in(r#"{"Event": "s3:TestEvent", "Bucket": "bucket"}"#), Some(vec![]));
        assert_eq!(dropped_csvs_in(r#"{"fan_out": "6f1c1f7e-8a3e-4a47-9b7e-0d6b7b0f3a11"}"#), None);
        assert_eq!(dropped_csvs_in("not json"), None);
    }
}
