//! The connection a writer task writes its batches on.
//!
//! Every `acquire` of a pooled connection costs a round trip to PostgreSQL (sqlx pings an idle
//! connection before handing it out), and every release two more (the store's
//! `after_release` check and sqlx's own ping). A batch written on a connection taken from the
//! pool and given back was therefore four round trips, one of them the batch; at one
//! connection, where each batch is one certificate, the three pings were as many wake-ups of
//! PostgreSQL and of the service as the statement itself. So a writer keeps its connection
//! from one batch to the next, as long as:
//!
//! - the pool has room for the others: with as many writers as pooled connections, a writer
//!   takes a connection for each batch and gives it back after it;
//! - the connection answered its last batch: after an error that is not the database's
//!   refusal of a statement (the connection broke, the server went away), it is closed and
//!   the next batch takes a fresh one;
//! - it was used in the last [`STALE_AFTER`]: a connection idle for longer is pinged before it
//!   takes a batch, as the pool would, so a server restarted while the writer was idle costs a
//!   new connection, not a failed batch;
//! - it is younger than [`HOLD_AT_MOST`]: then it goes back to the pool, which applies its own
//!   lifetime rules, and the next batch takes one;
//! - the pool is open: a writer waiting for work gives its connection back when the pool
//!   closes, so closing the pool at shutdown does not wait for it.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// A held connection idle for longer than this is pinged before its next batch.
const STALE_AFTER: Duration = Duration::from_millis(100);

/// A connection is held for at most this long, then given back to the pool.
const HOLD_AT_MOST: Duration = Duration::from_secs(300);

/// A writer's way to PostgreSQL: its pool and, between batches, the connection it holds.
pub(super) struct WriterConnection {
    pool: PgPool,
    /// Whether this writer may hold a connection between batches.
    keep: bool,
    held: Option<Held>,
}

struct Held {
    connection: PoolConnection<Postgres>,
    taken_at: Instant,
    used_at: Instant,
}

impl WriterConnection {
    /// `keep`: whether the writer may hold a connection between batches (the pool must then
    /// have more connections than there are writers).
    pub(super) fn new(pool: PgPool, keep: bool) -> WriterConnection {
        WriterConnection {
            pool,
            keep,
            held: None,
        }
    }

    /// Waits for `work`, giving the held connection back if the pool closes meanwhile.
    pub(super) async fn wait_for<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        if self.held.is_some() {
            let pool = self.pool.clone();
            tokio::select! {
                // Work already queued is taken without registering for the close event.
                biased;
                out = &mut work => return out,
                () = async { pool.close_event().await } => self.held = None,
            }
        }
        work.await
    }

    /// The connection for the next batch: the held one (pinged first if it was idle for more
    /// than [`STALE_AFTER`]), or one from the pool.
    pub(super) async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let now = Instant::now();
        if let Some(held) = &mut self.held {
            if now.duration_since(held.taken_at) > HOLD_AT_MOST {
                self.held = None;
            } else if now.duration_since(held.used_at) > STALE_AFTER
                && held.connection.ping().await.is_err()
            {
                self.discard();
            }
        }
        let held = match self.held.take() {
            Some(held) => held,
            None => Held {
                connection: self.pool.acquire().await?,
                taken_at: now,
                used_at: now,
            },
        };
        Ok(&mut *self.held.insert(held).connection)
    }

    /// After a batch: keeps the connection for the next one, gives it back to the pool, or
    /// closes it, according to `result`.
    pub(super) fn done<T>(&mut self, result: &Result<T, sqlx::Error>) {
        match result {
            Err(e) if !refused_by_database(e) => self.discard(),
            _ => match &mut self.held {
                Some(held) if self.keep && !held.connection.is_in_transaction() => {
                    held.used_at = Instant::now();
                }
                _ => self.held = None,
            },
        }
    }

    /// Closes the held connection instead of giving it back: it may be broken.
    fn discard(&mut self) {
        if let Some(mut held) = self.held.take() {
            held.connection.close_on_drop();
        }
    }
}

/// Whether `e` is the database refusing a statement on a connection that stays usable (a
/// constraint, a deadlock), not the connection or the server going away: SQLSTATE classes 08
/// (connection exception) and 57 (operator intervention: the server shutting down, the
/// backend terminated) come as database errors too, but leave nothing to write on.
pub(super) fn refused_by_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => !db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_statement_keeps_the_connection() {
        assert!(!refused_by_database(&sqlx::Error::Io(
            std::io::Error::other("connection reset")
        )));
        assert!(!refused_by_database(&sqlx::Error::PoolTimedOut));
        assert!(!refused_by_database(&sqlx::Error::Protocol(
            "unexpected message".into()
        )));
    }
}
