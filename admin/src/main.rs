//! imgpipe-admin: an operator's API keys without the console. Runs with the operator's own
//! AWS credentials (the standard AWS environment), or against the local stack with `--local`.
//!
//!   imgpipe-admin [--table T | --local] keys create --tenant NAME   the key, once, on the last line
//!   imgpipe-admin [--table T | --local] keys list [--tenant NAME]   never a secret
//!   imgpipe-admin [--table T | --local] keys revoke KEY_ID

mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use imgpipe_core::domain::request::Transition;
use imgpipe_core::domain::tenant::TenantId;
use imgpipe_core::use_cases::manage_keys::{create_key, list_keys, revoke_key};

#[derive(Parser)]
#[command(name = "imgpipe-admin", version, about = "Create, list and revoke imgpipe API keys")]
struct Cli {
    /// The stack's table (its `TableName` output). Required unless --local.
    #[arg(long, env = "TABLE_NAME", global = true, conflicts_with = "local")]
    table: Option<String>,
    /// Use the local stack started by `make up`: table and endpoint from its outputs.json,
    /// the emulator's test credentials.
    #[arg(long, global = true)]
    local: bool,
    /// The local stack's state directory (with --local).
    #[arg(long, global = true, default_value = ".stack/local")]
    stack_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API keys: each speaks for one tenant.
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(Subcommand)]
enum Keys {
    /// A new key for a tenant (making the tenant known), printed once on the last line.
    Create {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Keys, oldest first: id, tenant, status, created, last used. Never a secret.
    List {
        #[arg(long)]
        tenant: Option<TenantId>,
    },
    /// Refuses the key from the next call on (once the authorizer's cache, 300 s on AWS, expires).
    Revoke { key_id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("imgpipe-admin: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let table = target::table(cli.table, cli.local.then_some(cli.stack_dir.as_path())).await?;
    let Command::Keys(command) = cli.command;
    match command {
        Keys::Create { tenant } => {
            let (key, record) = create_key(&table, tenant).await?;
            println!("Created key {} for tenant {}. It is shown only now; keep it:", record.key_id, record.tenant_id);
            println!("{}", key.reveal());
        }
        Keys::List { tenant } => {
            let keys = list_keys(&table, tenant.as_ref()).await?;
            let width = keys.iter().map(|key| key.tenant_id.as_str().len()).max().unwrap_or(0).max("TENANT".len());
            println!("{:<16}  {:<width$}  {:<7}  {:<20}  LAST USED", "KEY ID", "TENANT", "STATUS", "CREATED");
            for key in keys {
                let status = serde_json::to_value(key.status)?;
                println!(
                    "{:<16}  {:<width$}  {:<7}  {:<20}  {}",
                    key.key_id,
                    key.tenant_id.as_str(),
                    status.as_str().unwrap_or_default(),
                    time(key.created_at),
                    key.last_used_at.map_or_else(|| "never".into(), time),
                );
            }
        }
        Keys::Revoke { key_id } => match revoke_key(&table, &key_id).await? {
            Transition::Applied => println!("Revoked key {key_id}."),
            Transition::AlreadyDone => println!("Key {key_id} was already revoked."),
        },
    }
    Ok(())
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
