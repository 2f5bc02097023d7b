-- Group commit (issue 6) exists for PostgreSQL only: the PostgreSQL migration 0006 makes two
-- foreign keys deferrable for the batching ledger writer. SQLite keeps the direct path (one
-- transaction per certificate; its writes serialize on one database lock anyway), so its schema
-- does not change. This file keeps the migration numbers of both backends aligned.
SELECT 1;
