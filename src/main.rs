use std::process::ExitCode;

fn main() -> ExitCode {
    match datarun::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<datarun::cli::Exit>() {
            Some(exit) => ExitCode::from(exit.0),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::from(datarun::cli::exit::of(&e))
            }
        },
    }
}
