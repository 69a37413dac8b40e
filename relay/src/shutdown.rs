//! Process signals: the one place the relay's commands wait for SIGINT or
//! SIGTERM.

/// Resolves on the first SIGINT or SIGTERM (SIGINT only where there is no
/// SIGTERM). If no signal can be watched at all, never resolves.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { term.recv().await; },
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once with
/// 130 (at-least-once still holds: unfinished offsets were never committed).
pub async fn graceful() {
    interrupted().await;
    tokio::spawn(async {
        interrupted().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}
