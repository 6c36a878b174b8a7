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
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// 1 for a failure while working (a tensor operation, the file system, an interruption), 2
/// for input to change (an option, a file's contents, a missing file; clap's usage errors exit
/// 2 too). Front ends rely on it: the Python package raises `ValueError` on 2.
fn exit_code(e: &anyhow::Error) -> u8 {
    use relprune::Error;
    match e.chain().find_map(|c| c.downcast_ref::<Error>()) {
        Some(Error::Torch(_) | Error::Node { .. } | Error::Json { .. } | Error::Interrupted(_)) => 1,
        Some(Error::Io { source, .. }) if source.kind() != std::io::ErrorKind::NotFound => 1,
        _ => 2,
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
