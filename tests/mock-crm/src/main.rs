//! `cpn-mock-crm`: a fake customer web server that prints what it receives.
//! See the crate docs and `cpn-mock-crm --help`.

use std::process::ExitCode;

use clap::Parser;

use cpn_mock_crm::MockCrmArgs;

/// A fake customer web server for cpn-relay: prints what it receives and
/// answers with configurable statuses, latency, failures and rejections.
#[derive(Debug, Parser)]
#[command(name = "cpn-mock-crm", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: MockCrmArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cpn_mock_crm::run_cli(cli.args, interrupted()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// SIGINT or SIGTERM: the CLI prints its totals and exits.
async fn interrupted() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
