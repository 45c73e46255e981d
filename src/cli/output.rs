//! Writing results to stdout: a closed pipe (`mcplatform events export | head -1`) ends the
//! verb quietly instead of panicking the way `println!` does.

use std::io;

/// Whether an error came from writing to a reader that went away.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = if let Some(io) = cause.downcast_ref::<io::Error>() {
            Some(io.kind())
        } else if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
            json.io_error_kind()
        } else if let Some(csv) = cause.downcast_ref::<csv::Error>() {
            match csv.kind() {
                csv::ErrorKind::Io(io) => Some(io.kind()),
                _ => None,
            }
        } else {
            None
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A reader that has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_is_recognised_through_every_writer() {
        let plain = anyhow::Error::from(Closed.write_all(b"x").unwrap_err());
        assert!(is_broken_pipe(&plain.context("writing")));
        let json = serde_json::to_writer(Closed, &1).unwrap_err();
        assert!(is_broken_pipe(&json.into()));
        let mut csv = csv::Writer::from_writer(Closed);
        let csv = csv
            .write_record(["a"])
            .and_then(|()| csv.flush().map_err(csv::Error::from))
            .unwrap_err();
        assert!(is_broken_pipe(&csv.into()));
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
    }
}
