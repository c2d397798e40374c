//! The other way in: a CSV dropped into the bucket under `incoming/`. S3 tells the jobs queue,
//! the worker accepts the file exactly as the API accepts an upload (same rules, same kind of
//! request, no webhook) and writes a receipt beside it for the person who dropped it,
//! `receipts/<name>.json`: the request id and where the output CSV will be, or every problem
//! found in the CSV, by line. A rejected file leaves no request behind.
//!
//! A CSV PUT to a reserved upload's key (`domain::upload_reservation`) is accepted the same
//! way, under the id the reservation handed out and with its webhook; when it is refused, the
//! reservation keeps why, for the status to answer.

use serde::Serialize;

use crate::domain::csv_rules::{CsvProblem, CsvRejection};
use crate::domain::dropped_csv::DroppedCsv;
use crate::domain::errors::StoreError;
use crate::domain::http_url::HttpUrl;
use crate::domain::locations::{output_csv_key, status_path};
use crate::domain::request::RequestStatus;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;
use crate::domain::upload_reservation::{UploadRefusal, reserved_upload_of};
use crate::ports::BlobStore;
use crate::use_cases::accept_upload::{AcceptError, AcceptPorts, Upload, UploadRules, accept_csv_as};

/// What the receipt says; `status` is "accepted" or "rejected".
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Receipt<'a> {
    Accepted {
        source: &'a str,
        request_id: RequestId,
        images: u64,
        /// On the API: `GET <ApiUrl>/api/status/<request_id>/`.
        status_path: String,
        /// In this bucket, once every image is done.
        output_csv_key: String,
    },
    Rejected {
        source: &'a str,
        error: String,
        problems: Vec<CsvProblem>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DropOutcome {
    Accepted(RequestId),
    /// A redelivered event: the request was made before; its receipt is written again.
    AlreadyAccepted(RequestId),
    /// The CSV broke the rules: the receipt lists why, no request was made.
    Rejected,
    /// The object was deleted before it was read: nothing to do.
    Gone,
}

/// Accepts one dropped CSV and writes its receipt. An `Err` is an outage: the event should be
/// delivered again.
pub async fn accept_dropped_csv(
    ports: AcceptPorts<'_>,
    dropped: &DroppedCsv,
    rules: &UploadRules<'_>,
) -> Result<DropOutcome, AcceptError> {
    let reservation = match reserved_upload_of(&dropped.key) {
        None => None,
        Some((tenant, id)) => match ports.reservations.reservation(id).await? {
            Some(reservation) if reservation.tenant_id == tenant => Some(reservation),
            _ => {
                let error = "no upload was reserved for this key: reserve one with POST /api/uploads and PUT the \
                             file to the upload_url it answers"
                    .to_string();
                put_receipt(
                    ports.blobs,
                    dropped,
                    &Receipt::Rejected { source: &dropped.key, error, problems: Vec::new() },
                )
                .await?;
                return Ok(DropOutcome::Rejected);
            }
        },
    };
    let request_id = reservation.as_ref().map_or_else(|| dropped.request_id(), |r| r.request_id);
    let tenant = match dropped.tenant() {
        Ok(tenant) if ports.tenants.is_known(&tenant).await? => tenant,
        named => {
            let error = match named {
                Ok(tenant) => format!("no tenant {tenant}: drop CSVs under incoming/<your tenant>/"),
                Err(why) => why,
            };
            put_receipt(ports.blobs, dropped, &Receipt::Rejected { source: &dropped.key, error, problems: Vec::new() })
                .await?;
            return Ok(DropOutcome::Rejected);
        }
    };
    if let Some(request) = ports.requests.get(request_id).await? {
        // The first delivery may have stopped between recording the request and queueing its
        // fan-out; queueing it again is harmless (a fan-out never resets a result).
        if request.status == RequestStatus::Pending {
            ports.queue.enqueue_fan_out(request_id).await?;
        }
        write_receipt(&ports, dropped, &accepted(dropped, &request.tenant_id, request_id, request.total)).await?;
        return Ok(DropOutcome::AlreadyAccepted(request_id));
    }
    if reservation.as_ref().is_some_and(|r| r.refusal.is_some()) {
        // Refused before (its receipt says why): a reservation is used once.
        return Ok(DropOutcome::Rejected);
    }
    let outcome = if dropped.size > rules.limits.max_bytes as u64 {
        Err(AcceptError::Csv(CsvRejection::TooLarge { limit: rules.limits.max_bytes }))
    } else {
        let Some(bytes) = ports.blobs.get(&dropped.key).await? else {
            return Ok(DropOutcome::Gone);
        };
        let webhook_url = reservation.as_ref().and_then(|r| r.webhook_url.as_ref()).map(HttpUrl::as_str);
        let upload = Upload { tenant: &tenant, csv: &bytes, webhook_url, idempotency_key: None };
        accept_csv_as(ports, request_id, &upload, rules).await
    };
    let refusal = match outcome {
        Ok(request) => {
            let receipt = accepted(dropped, &tenant, request_id, request.image_count);
            write_receipt(&ports, dropped, &receipt).await?;
            return Ok(DropOutcome::Accepted(request_id));
        }
        Err(AcceptError::Csv(CsvRejection::Invalid(problems))) => UploadRefusal {
            error: "invalid_csv".into(),
            message: "the CSV was not accepted; nothing was queued".into(),
            problems,
        },
        Err(AcceptError::Csv(rejection @ CsvRejection::TooLarge { .. })) => {
            UploadRefusal { error: "csv_too_large".into(), message: rejection.to_string(), problems: Vec::new() }
        }
        Err(error @ AcceptError::OverQuota { .. }) => {
            UploadRefusal { error: "quota_exceeded".into(), message: error.to_string(), problems: Vec::new() }
        }
        Err(error @ AcceptError::WebhookUrl(_)) => {
            UploadRefusal { error: "invalid_webhook_url".into(), message: error.to_string(), problems: Vec::new() }
        }
        // An outage; no idempotency key is passed, so no other error can come.
        Err(error) => return Err(error),
    };
    if let Some(reservation) = &reservation {
        ports.reservations.refuse_upload(reservation.request_id, &refusal).await?;
    }
    let error = if refusal.problems.is_empty() {
        refusal.message
    } else {
        format!("the CSV has {} problem(s)", refusal.problems.len())
    };
    let receipt = Receipt::Rejected { source: &dropped.key, error, problems: refusal.problems };
    write_receipt(&ports, dropped, &receipt).await?;
    Ok(DropOutcome::Rejected)
}

/// Gives up on a dropped CSV whose acceptance failed on every delivery (its notification is in
/// the dead-letter queue): unless a request was made for it, its receipt says to drop it again,
/// and a reserved upload's reservation says so to its status.
pub async fn reject_dropped_csv(ports: AcceptPorts<'_>, dropped: &DroppedCsv) -> Result<DropOutcome, StoreError> {
    let reserved_id = reserved_upload_of(&dropped.key).map(|(_, id)| id);
    let request_id = reserved_id.unwrap_or_else(|| dropped.request_id());
    if ports.requests.get(request_id).await?.is_some() {
        return Ok(DropOutcome::AlreadyAccepted(request_id));
    }
    let error = "the CSV could not be accepted in any of several attempts (a service was unavailable); \
                 drop the file again"
        .to_string();
    if let Some(id) = reserved_id {
        let message = "the CSV could not be accepted in any of several attempts (a service was unavailable)";
        let refusal = UploadRefusal { error: "unavailable".into(), message: message.into(), problems: Vec::new() };
        ports.reservations.refuse_upload(id, &refusal).await?;
    }
    let receipt = Receipt::Rejected { source: &dropped.key, error, problems: Vec::new() };
    put_receipt(ports.blobs, dropped, &receipt).await?;
    Ok(DropOutcome::Rejected)
}

fn accepted<'a>(dropped: &'a DroppedCsv, tenant: &TenantId, request_id: RequestId, images: u64) -> Receipt<'a> {
    Receipt::Accepted {
        source: &dropped.key,
        request_id,
        images,
        status_path: status_path(request_id),
        output_csv_key: output_csv_key(tenant, request_id),
    }
}

async fn write_receipt(ports: &AcceptPorts<'_>, dropped: &DroppedCsv, receipt: &Receipt<'_>) -> Result<(), StoreError> {
    put_receipt(ports.blobs, dropped, receipt).await
}

async fn put_receipt(blobs: &dyn BlobStore, dropped: &DroppedCsv, receipt: &Receipt<'_>) -> Result<(), StoreError> {
    let body = serde_json::to_vec_pretty(receipt).expect("a receipt is plain data that always serialises");
    blobs.put(&dropped.receipt_key(), body, "application/json").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_key::{ApiKey, KeyRecord};
    use crate::domain::csv_rules::CsvLimits;
    use crate::domain::quota::TenantQuota;
    use crate::domain::upload_reservation::UploadReservation;
    use crate::ports::ManageKeys;
    use crate::ports::{ReadRequest, UploadReservations};
    use crate::test_support::tenant;
    use crate::use_cases::accept_upload::tests::Fakes;
    use std::time::Duration;

    /// Fakes where the tenant `acme` has a key.
    async fn fakes() -> Fakes {
        let fakes = Fakes::default();
        let key = KeyRecord::new(&ApiKey::generate().unwrap(), tenant(), chrono::Utc::now());
        fakes.table.add_key(&key).await.unwrap();
        fakes
    }

    async fn accept(fakes: &Fakes, dropped: &DroppedCsv) -> DropOutcome {
        let rules = UploadRules { limits: &CsvLimits::bucket(), quota: TenantQuota { max_open_images: 1_000 } };
        accept_dropped_csv(fakes.ports(), dropped, &rules).await.unwrap()
    }

    const CSV: &str =
        "S. No.,Product Name,Input Image Urls\n1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n";

    async fn drop_file(fakes: &Fakes, key: &str, body: &str, version: &str) -> DroppedCsv {
        fakes.blobs.put(key, body.as_bytes().to_vec(), "text/csv").await.unwrap();
        DroppedCsv { bucket: "b".into(), key: key.into(), size: body.len() as u64, version: version.into() }
    }

    async fn receipt(fakes: &Fakes, dropped: &DroppedCsv) -> serde_json::Value {
        let body = fakes.blobs.get(&dropped.receipt_key()).await.unwrap().expect("a receipt");
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn a_dropped_csv_becomes_one_request_even_when_its_event_comes_twice() {
        let fakes = fakes().await;
        let dropped = drop_file(&fakes, "incoming/acme/spring/shirts.csv", CSV, "0055AED6DCD90281E5").await;

        let first = accept(&fakes, &dropped).await;
        assert_eq!(first, DropOutcome::Accepted(dropped.request_id()));
        let request = fakes.table.get(dropped.request_id()).await.unwrap().unwrap();
        assert_eq!((request.total, request.status), (2, RequestStatus::Pending));
        let receipt_json = receipt(&fakes, &dropped).await;
        assert_eq!(dropped.receipt_key(), "receipts/acme/spring/shirts.json");
        assert_eq!(receipt_json["status"], "accepted");
        assert_eq!(receipt_json["request_id"], dropped.request_id().to_string());
        assert_eq!(receipt_json["images"], 2);
        assert_eq!(receipt_json["output_csv_key"], output_csv_key(&tenant(), dropped.request_id()));

        let again = accept(&fakes, &dropped).await;
        assert_eq!(again, DropOutcome::AlreadyAccepted(dropped.request_id()));
        // The request was not made twice; its fan-out was queued again (harmless, and needed
        // when the first delivery stopped before queueing it).
        assert_eq!(fakes.queue.fan_outs.lock().unwrap().clone(), vec![dropped.request_id(); 2]);
    }

    #[tokio::test]
    async fn a_new_version_of_the_same_file_is_a_new_request() {
        let fakes = fakes().await;
        let first = drop_file(&fakes, "incoming/acme/shirts.csv", CSV, "01").await;
        let second = drop_file(&fakes, "incoming/acme/shirts.csv", CSV, "02").await;
        assert_ne!(first.request_id(), second.request_id());
        for dropped in [&first, &second] {
            accept(&fakes, dropped).await;
            assert!(fakes.table.get(dropped.request_id()).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_bad_csv_gets_a_receipt_with_its_problems_and_no_request() {
        let fakes = fakes().await;
        let bad = "S. No.,Product Name,Input Image Urls\n1,Shirt,not-a-url\n";
        let dropped = drop_file(&fakes, "incoming/acme/bad.csv", bad, "01").await;
        let outcome = accept(&fakes, &dropped).await;

        assert_eq!(outcome, DropOutcome::Rejected);
        let receipt_json = receipt(&fakes, &dropped).await;
        assert_eq!(receipt_json["status"], "rejected");
        assert_eq!(receipt_json["problems"][0]["line"], 2, "{receipt_json}");
        assert!(fakes.table.get(dropped.request_id()).await.unwrap().is_none());
        assert!(fakes.queue.fan_outs.lock().unwrap().clone().is_empty());
    }

    #[tokio::test]
    async fn a_file_over_the_size_limit_is_refused_unread() {
        let fakes = fakes().await;
        let mut dropped = drop_file(&fakes, "incoming/acme/huge.csv", CSV, "01").await;
        dropped.size = 10 * 1024 * 1024 * 1024;
        let outcome = accept(&fakes, &dropped).await;
        assert_eq!(outcome, DropOutcome::Rejected);
        assert!(receipt(&fakes, &dropped).await["error"].as_str().unwrap().contains("larger than the limit"));
    }

    #[tokio::test]
    async fn a_file_deleted_before_it_was_read_is_left_alone() {
        let fakes = fakes().await;
        let dropped =
            DroppedCsv { bucket: "b".into(), key: "incoming/acme/gone.csv".into(), size: 10, version: "1".into() };
        let outcome = accept(&fakes, &dropped).await;
        assert_eq!(outcome, DropOutcome::Gone);
        assert!(fakes.blobs.get(&dropped.receipt_key()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_csv_dropped_for_an_unknown_tenant_or_none_is_refused_with_a_receipt() {
        let fakes = fakes().await;
        for key in ["incoming/initech/shirts.csv", "incoming/shirts.csv"] {
            let dropped = drop_file(&fakes, key, CSV, "01").await;
            assert_eq!(accept(&fakes, &dropped).await, DropOutcome::Rejected, "{key}");
            let receipt_json = receipt(&fakes, &dropped).await;
            assert!(receipt_json["error"].as_str().unwrap().contains("incoming/<your tenant>/"), "{receipt_json}");
            assert!(fakes.table.get(dropped.request_id()).await.unwrap().is_none());
        }
    }

    /// A reservation of `acme`'s, as `POST /api/uploads` makes it.
    async fn reserve(fakes: &Fakes, webhook_url: Option<&str>) -> UploadReservation {
        let webhook_url = webhook_url.map(|url| HttpUrl::parse(url).unwrap());
        let reservation = UploadReservation::new(tenant(), webhook_url, chrono::Utc::now(), Duration::from_secs(600));
        fakes.table.reserve(&reservation).await.unwrap();
        reservation
    }

    #[tokio::test]
    async fn a_reserved_upload_becomes_the_request_it_was_promised_with_its_webhook_once() {
        let fakes = fakes().await;
        let reservation = reserve(&fakes, Some("https://hooks.example/x")).await;
        let dropped = drop_file(&fakes, &reservation.upload_key(), CSV, "01").await;

        let id = reservation.request_id;
        assert_eq!(accept(&fakes, &dropped).await, DropOutcome::Accepted(id));
        let request = fakes.table.get(id).await.unwrap().expect("the request under the reserved id");
        assert_eq!(request.webhook_url.unwrap().as_str(), "https://hooks.example/x");
        let receipt_json = receipt(&fakes, &dropped).await;
        assert_eq!(dropped.receipt_key(), format!("receipts/acme/uploads/{id}.json"));
        assert_eq!(
            (receipt_json["status"].as_str(), receipt_json["request_id"].as_str()),
            (Some("accepted"), Some(id.to_string().as_str()))
        );

        // The event again, and a second PUT to the same URL (a new version): still one request.
        assert_eq!(accept(&fakes, &dropped).await, DropOutcome::AlreadyAccepted(id));
        let second = drop_file(&fakes, &reservation.upload_key(), CSV, "02").await;
        assert_eq!(accept(&fakes, &second).await, DropOutcome::AlreadyAccepted(id));
        assert_eq!(fakes.table.get(id).await.unwrap().unwrap().total, 2);
    }

    #[tokio::test]
    async fn a_reserved_upload_that_breaks_the_rules_keeps_why_for_the_status() {
        let fakes = fakes().await;
        let reservation = reserve(&fakes, None).await;
        let bad = "S. No.,Product Name,Input Image Urls\n1,Shirt,not-a-url\n";
        let dropped = drop_file(&fakes, &reservation.upload_key(), bad, "01").await;

        assert_eq!(accept(&fakes, &dropped).await, DropOutcome::Rejected);
        let stored = fakes.table.reservation(reservation.request_id).await.unwrap().unwrap();
        let refusal = stored.refusal.expect("the refusal is kept");
        assert_eq!(refusal.error, "invalid_csv");
        assert_eq!(refusal.problems[0].line, Some(2));
        assert_eq!(receipt(&fakes, &dropped).await["problems"][0]["line"], 2);
        assert!(fakes.table.get(reservation.request_id).await.unwrap().is_none());

        // A corrected file PUT to the same URL is not accepted: a reservation is used once.
        let corrected = drop_file(&fakes, &reservation.upload_key(), CSV, "02").await;
        assert_eq!(accept(&fakes, &corrected).await, DropOutcome::Rejected);
        assert!(fakes.table.get(reservation.request_id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_reserved_upload_over_the_size_limit_is_refused_unread_with_the_inline_code() {
        let fakes = fakes().await;
        let reservation = reserve(&fakes, None).await;
        let mut dropped = drop_file(&fakes, &reservation.upload_key(), CSV, "01").await;
        dropped.size = 100 * 1024 * 1024 + 1;
        assert_eq!(accept(&fakes, &dropped).await, DropOutcome::Rejected);
        let refusal = fakes.table.reservation(reservation.request_id).await.unwrap().unwrap().refusal.unwrap();
        assert_eq!(refusal.error, "csv_too_large");
        assert!(refusal.message.contains("larger than the limit of 104857600 bytes"), "{}", refusal.message);
    }

    #[tokio::test]
    async fn a_file_under_uploads_without_its_tenants_reservation_is_refused() {
        let fakes = fakes().await;
        let initech: crate::domain::tenant::TenantId = "initech".parse().unwrap();
        let theirs = UploadReservation::new(initech, None, chrono::Utc::now(), Duration::from_secs(600));
        fakes.table.reserve(&theirs).await.unwrap();
        let unreserved = format!("incoming/acme/uploads/{}.csv", RequestId::new_random());
        let under_their_id = format!("incoming/acme/uploads/{}.csv", theirs.request_id);
        for key in [unreserved, under_their_id] {
            let dropped = drop_file(&fakes, &key, CSV, "01").await;
            assert_eq!(accept(&fakes, &dropped).await, DropOutcome::Rejected, "{key}");
            assert!(receipt(&fakes, &dropped).await["error"].as_str().unwrap().contains("POST /api/uploads"));
        }
        assert!(fakes.table.get(theirs.request_id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_reserved_upload_given_up_on_keeps_its_request_or_says_why_in_its_status() {
        let fakes = fakes().await;
        let made = reserve(&fakes, None).await;
        let dropped = drop_file(&fakes, &made.upload_key(), CSV, "01").await;
        accept(&fakes, &dropped).await;
        // A later delivery of the same event went to the dead-letter queue: the request stands.
        let outcome = reject_dropped_csv(fakes.ports(), &dropped).await.unwrap();
        assert_eq!(outcome, DropOutcome::AlreadyAccepted(made.request_id));
        assert_eq!(receipt(&fakes, &dropped).await["status"], "accepted");

        let never = reserve(&fakes, None).await;
        let dropped = drop_file(&fakes, &never.upload_key(), CSV, "01").await;
        assert_eq!(reject_dropped_csv(fakes.ports(), &dropped).await.unwrap(), DropOutcome::Rejected);
        let refusal = fakes.table.reservation(never.request_id).await.unwrap().unwrap().refusal.expect("a refusal");
        assert_eq!(refusal.error, "unavailable");
        assert!(refusal.message.contains("any of several attempts"), "{}", refusal.message);
    }
}
