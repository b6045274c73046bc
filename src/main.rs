use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DATARUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,datarun=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match datarun::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<datarun::cli::Exit>() {
            Some(exit) => ExitCode::from(exit.0),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
