//! Each command: read the configuration, make the calls, print for a person (results on
//! stdout, progress and notes on stderr).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::args::{Cli, Command, Connection, OutputCsv};
use crate::client::Api;
use crate::config::{self, Given, Profile};
use crate::download::{default_output_csv, save_images, save_output_csv};
use crate::errors::CliError;
use crate::requests::{self, Polled};
use crate::submit::{Submission, Way, submit};
use crate::summary::{progress_line, summary};
use crate::verify::{check, parse_headers, split_request};
use crate::wait::{Display, follow};

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let connection = cli.connection;
    match cli.command {
        Command::Submit { file, webhook, idempotency_key, wait, output, inline_limit } => {
            let api = api(&connection)?;
            let csv = read(&file)?;
            let submission = Submission {
                csv,
                webhook_url: webhook.as_deref(),
                idempotency_key: idempotency_key.as_deref(),
                inline_limit,
            };
            let submitted = submit(&api, submission).await?;
            if submitted.way == Way::Presigned {
                eprintln!("{} was sent the large-CSV way (POST /api/uploads, then PUT)", file.display());
            }
            if let Some(secret) = &submitted.webhook_secret {
                eprintln!("webhook secret (shown once; verify deliveries with it): {secret}");
            }
            println!("{}", submitted.request_id);
            if wait {
                wait_and_report(&api, &submitted.request_id, &output).await?;
            }
            Ok(())
        }
        Command::Wait { id, output } => wait_and_report(&api(&connection)?, &id, &output).await,
        Command::Status { id, json } => {
            let api = api(&connection)?;
            if json {
                let answer = api.get_raw(&requests::status_path(&id)).await?;
                println!("{}", serde_json::to_string_pretty(&answer).expect("JSON prints"));
                return Ok(());
            }
            match requests::poll(&api, &id).await? {
                Polled::NotReady => println!("Request {id}: its CSV is not accepted yet (sent the large-CSV way)"),
                Polled::Status(status) => print_status(&status),
            }
            Ok(())
        }
        Command::List { limit, after, json } => {
            let api = api(&connection)?;
            if json {
                let mut path = format!("/api/requests?limit={limit}");
                if let Some(after) = &after {
                    path.push_str(&format!("&after={after}"));
                }
                println!("{}", serde_json::to_string_pretty(&api.get_raw(&path).await?).expect("JSON prints"));
                return Ok(());
            }
            let page = requests::list_page(&api, limit, after.as_deref()).await?;
            println!(
                "{:<36}  {:<21}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  CREATED",
                "REQUEST", "STATUS", "TOTAL", "DONE", "FAILED", "CANCELLED", "PENDING"
            );
            for request in &page.requests {
                println!(
                    "{:<36}  {:<21}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  {}",
                    request.request_id,
                    request.status,
                    request.total,
                    request.succeeded,
                    request.failed,
                    request.cancelled,
                    request.pending,
                    request.created_at
                );
            }
            if let Some(next) = page.next {
                eprintln!("more: imgpipe list --limit {limit} --after {next}");
            }
            Ok(())
        }
        Command::Failures { id } => {
            let api = api(&connection)?;
            let images = requests::all_images(&api, &id).await?;
            let failed: Vec<_> = images.iter().filter(|image| image.state == "FAILED").collect();
            for image in &failed {
                println!(
                    "row {}\timage {}\t{}\t{}\t{}",
                    image.row,
                    image.image_index,
                    image.error_code.as_deref().unwrap_or("unknown"),
                    image.input_url,
                    image.error_message.as_deref().unwrap_or("")
                );
            }
            eprintln!("{} of {} images failed", failed.len(), images.len());
            Ok(())
        }
        Command::Download { id, output, images } => {
            let api = api(&connection)?;
            let path = output.unwrap_or_else(|| default_output_csv(&id));
            save_output_csv(&api, &id, &path).await?;
            println!("Output CSV saved to {}", path.display());
            if let Some(dir) = images {
                let listed = requests::all_images(&api, &id).await?;
                let (saved, without) = save_images(&api, &listed, &dir, Display::detect()).await?;
                println!("{saved} images saved to {}", dir.display());
                if without > 0 {
                    println!("{without} images have no output (failed or cancelled): imgpipe failures {id}");
                }
            }
            Ok(())
        }
        Command::Cancel { id } => {
            let status = requests::cancel(&api(&connection)?, &id).await?;
            print_status(&status);
            Ok(())
        }
        Command::Retry { id, wait, output } => {
            let api = api(&connection)?;
            let accepted = requests::retry(&api, &id).await?;
            eprintln!(
                "retry of {}: {} images, only the failed ones processed again",
                accepted.retry_of.as_deref().unwrap_or(&id),
                accepted.images
            );
            println!("{}", accepted.request_id);
            if wait {
                wait_and_report(&api, &accepted.request_id, &output).await?;
            }
            Ok(())
        }
        Command::VerifyWebhook { secret, request, headers, body, tolerance } => {
            let (head, body) = match (request, headers, body) {
                (Some(request), _, _) => {
                    let raw = read(&request)?;
                    let (head, body) = split_request(&raw);
                    (head, body.to_vec())
                }
                (None, Some(headers), Some(body)) => {
                    (String::from_utf8_lossy(&read(&headers)?).into_owned(), read(&body)?)
                }
                _ => return Err(CliError::Usage("pass --request FILE, or --headers FILE and --body FILE".into())),
            };
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() as i64;
            check(&secret, &parse_headers(&head), &body, now, tolerance)?;
            println!("valid");
            Ok(())
        }
        Command::Configure { default } => {
            let path = config::config_path(env_path())?;
            let name = connection.profile.clone().unwrap_or_else(|| "default".into());
            if connection.api_url.is_none() || connection.api_key.is_none() {
                return Err(CliError::Usage("configure needs --api-url and --api-key".into()));
            }
            let profile = Profile { api_url: connection.api_url, api_key: connection.api_key };
            config::save_profile(&path, &name, profile, default)?;
            println!("profile `{name}` saved to {}", path.display());
            Ok(())
        }
    }
}

/// The API client of the flags, environment and config file.
fn api(connection: &Connection) -> Result<Api, CliError> {
    let var = |name: &str| std::env::var(name).ok();
    let flags = Given {
        api_url: connection.api_url.clone(),
        api_key: connection.api_key.clone(),
        profile: connection.profile.clone(),
    };
    let env =
        Given { api_url: var("IMGPIPE_API_URL"), api_key: var("IMGPIPE_API_KEY"), profile: var("IMGPIPE_PROFILE") };
    let path = config::config_path(env_path())?;
    let file = config::read_file(&path)?;
    Api::new(&config::resolve(&flags, &env, &file, &path)?)
}

fn env_path() -> Option<PathBuf> {
    std::env::var_os("IMGPIPE_CONFIG").filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// Follows the request, prints the summary, saves the output CSV; a request that ended
/// failed or cancelled is exit code 5.
async fn wait_and_report(api: &Api, id: &str, output: &OutputCsv) -> Result<(), CliError> {
    let (status, elapsed) = follow(api, id, Display::detect()).await?;
    let images = requests::all_images(api, id).await?;
    print!("{}", summary(&status, &images, elapsed));
    if status.output_csv_url.is_some() && !output.no_output {
        let path = output.output.clone().unwrap_or_else(|| default_output_csv(id));
        save_output_csv(api, id, &path).await?;
        println!("Output CSV saved to {}", path.display());
    }
    if status.is_unsuccessful() {
        return Err(CliError::RequestFailed(format!("request {id} ended {}", status.status)));
    }
    Ok(())
}

fn print_status(status: &crate::answers::Status) {
    println!("Request {}: {}", status.request_id, progress_line(status, None));
    println!("  created {}, completed {}", status.created_at, status.completed_at.as_deref().unwrap_or("-"));
    if let Some(first) = &status.retry_of {
        println!("  retry of {first}");
    }
    if let Some(url) = &status.output_csv_url {
        println!("  output CSV: {url}");
    }
    if let Some(url) = &status.errors_csv_url {
        println!("  errors CSV: {url}");
    }
    if let Some(reason) = &status.failure_reason {
        println!("  failure reason: {reason}");
    }
    for failure in status.failures.iter().flatten() {
        println!(
            "  failed: row {} image {} {}: {} ({})",
            failure.row,
            failure.image_index,
            failure.input_url,
            failure.error_code.as_deref().unwrap_or("unknown"),
            failure.error_message.as_deref().unwrap_or("")
        );
    }
}

/// A file's bytes; `-` is stdin.
fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|error| CliError::File(format!("cannot read stdin: {error}")))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|error| CliError::File(format!("cannot read {}: {error}", path.display())))
}
