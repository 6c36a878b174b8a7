//! The `relprune` command line: a thin layer over the library.

mod cli;

fn main() -> std::process::ExitCode {
    // Ctrl-C, SIGTERM or SIGHUP: remove the staging folders and temporary files of unfinished
    // outputs (earlier outputs stay as they were), then exit as a shell expects of an interrupt.
    let _ = ctrlc::set_handler(|| {
        let _held = relprune::util::remove_partials();
        eprintln!("interrupted: unfinished outputs removed; rerun to resume where supported");
        // `_exit`, not `exit`: the main thread is still computing, and running libtorch's static
        // destructors under it can crash the process instead of ending it.
        // SAFETY: `_exit` only ends the process; nothing runs after it.
        unsafe { libc::_exit(130) }
    });
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: library errors already quote their
/// source's text, which `{:#}` would repeat.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
