//! `skyhook`: the whole of Skyhook in one process (`skyhook serve`) on the
//! embedded SQLite backend, plus a few commands around it, and a CLI for the
//! API (`skyhook applications|keys|event-types|endpoints|send|deliveries|verify`).

mod cli;
mod http_server;
mod listen;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skyhook",
    version,
    about = "Outbound webhooks: signed, retried, searchable.",
    after_help = "The API commands talk to a running Skyhook: --url / SKYHOOK_URL (default http://127.0.0.1:8080), \
        --api-key / SKYHOOK_API_KEY, or for applications and keys the admin token (--admin-token / \
        SKYHOOK_ADMIN_TOKEN, else read from --data-dir). Add --json for the API's JSON.\n\n\
        Quick start:\n  skyhook serve --allow-loopback &\n  skyhook applications create Acme\n  \
        skyhook keys create app_… quickstart\n  export SKYHOOK_API_KEY=sk_…\n  \
        skyhook event-types create invoice.paid\n  skyhook endpoints create http://127.0.0.1:9000/hooks\n  \
        skyhook send invoice.paid --data '{\"amount\":4200}'\n  skyhook deliveries list"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, fan-out and dispatcher in one process on SQLite.
    Serve(serve::ServeArgs),
    /// Print the admin token stored in the data dir (created on first start).
    AdminToken {
        #[arg(long, env = "SKYHOOK_DATA_DIR", default_value = "./.skyhook")]
        data_dir: PathBuf,
    },
    /// Receive webhooks locally: print each one and check its signature.
    Listen {
        /// Address to listen on.
        #[arg(long, env = "SKYHOOK_LISTEN_ADDR", default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// The endpoint's signing secret (whsec_…, checks v1) or Ed25519 public key (whpk_…,
        /// checks v1a); without it signatures are not checked.
        #[arg(long, env = "SKYHOOK_ENDPOINT_SECRET")]
        secret: Option<String>,
        /// Answer this HTTP status instead of 204 (to try retries).
        #[arg(long, default_value_t = 204)]
        status: u16,
    },
    #[command(flatten)]
    Api(cli::Command),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command
        && let Some(workers) = args.worker_threads()
    {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::AdminToken { data_dir } => serve::print_admin_token(&data_dir).await,
            Command::Listen { listen, secret, status } => listen::run(listen, secret, status).await,
            Command::Api(command) => cli::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("skyhook: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
