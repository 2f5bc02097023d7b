-- The PostgreSQL migration of this number declares the ledger's time-ordered indexes ascending,
-- so that new rows fill them at the right instead of splitting pages 50/50 at the left. SQLite's
-- B-tree rebalances a full page with its siblings instead of splitting it in two, so the order
-- does not waste space there, and its indexes keep their definitions. This migration only keeps
-- the two backends' migration numbers in step.
SELECT 1;
