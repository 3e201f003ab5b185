//! Standard output for the command's results. `println!` panics when the reader has gone
//! (`kiln eval --json | head`); [`outln!`] stops writing instead, and the command finishes with
//! the exit code of its work.

use std::io::Write as _;

/// Writes one line to standard output. A closed pipe ends the output quietly; any other write
/// error is one line on stderr and `exit_code::OTHER_ERROR`.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    match written {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {err}");
            std::process::exit(i32::from(super::exit_code::OTHER_ERROR));
        }
        // The reader is gone: what is left to print has no reader.
        _ => {}
    }
}

/// `println!` for command results, without the panic on a closed pipe (see [`write_line`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}
