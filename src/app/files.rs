//! The open-file limit: raised to its hard limit at startup, and the connection cap kept
//! below it so that the accept loop never meets EMFILE (which would stall every client).

/// Files kept for other uses than client connections: the database pool (a SQLite connection
/// holds the database, its WAL and shared memory), listeners, key files, logs.
fn reserved_files(database_connections: u32) -> u64 {
    3 * u64::from(database_connections) + 256
}

/// The soft `RLIMIT_NOFILE` before and after raising it to the hard limit.
#[derive(Debug, Clone, Copy)]
pub struct FileLimit {
    pub before: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit (`None`: unlimited). A failure leaves the
/// limit as it was and is logged.
pub fn raise_open_file_limit() -> FileLimit {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut raised = FileLimit {
        before: limit.current,
        soft: limit.current,
        hard: limit.maximum,
    };
    if limit.current != limit.maximum {
        let wanted = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => raised.soft = getrlimit(Resource::Nofile).current,
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    raised
}

/// The connection cap in force: `configured`, lowered to stay below the open-file limit.
pub fn connection_cap(
    configured: usize,
    soft_limit: Option<u64>,
    database_connections: u32,
) -> usize {
    let Some(soft) = soft_limit else {
        return configured;
    };
    let available = soft
        .saturating_sub(reserved_files(database_connections))
        .max(16);
    configured.min(usize::try_from(available).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit_with_room_for_the_database() {
        assert_eq!(connection_cap(10_000, Some(20_000), 16), 10_000);
        assert_eq!(connection_cap(10_000, Some(4_096), 16), 4_096 - 48 - 256);
        assert_eq!(connection_cap(10_000, None, 16), 10_000);
        // A tiny limit still leaves a few connections rather than none.
        assert_eq!(connection_cap(10_000, Some(100), 16), 16);
    }
}
