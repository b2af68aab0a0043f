//! SIGINT/SIGTERM → a shutdown token, so every worker stops claiming and winds down gracefully.

use bg_run_core::CancellationToken;
use tokio::signal::unix::{signal, SignalKind};

/// A token cancelled on the first SIGINT or SIGTERM. A second signal exits at once: the
/// person pressing Ctrl-C twice means it, and leases bring any claimed task back.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            tracing::warn!("cannot install signal handlers; stop bg-run with SIGKILL");
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        tracing::info!("shutdown requested: no new tasks will be claimed (signal again to exit now)");
        trigger.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("bg-run: second signal, exiting now; claimed tasks return when their leases expire");
        std::process::exit(130);
    });
    token
}
