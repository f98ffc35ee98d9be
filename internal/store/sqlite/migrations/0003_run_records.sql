-- 0003: while a materialized run is stored, its targets are its contact
-- ledger entries and its holdout assignments. RunMaterialize no longer
-- copies them into contacts and holdout_assignments (two more
-- audience-sized writes in its transaction); what counts contacts or
-- reads a recorded group reads those tables plus the stored materialized
-- runs' targets, and RunDelete moves a run's entries and assignments into
-- the tables in the transaction that deletes its targets.
--
-- materialized_at (Unix microseconds) is the time of the run's ledger
-- entries (the cap window compares it); materialized_seq its place among
-- its campaign's materializations (the first group recorded for a
-- customer is the one kept). Both stay NULL until the run is
-- materialized, and for a run materialized before this migration: its
-- entries and assignments are in contacts and holdout_assignments
-- already, and are voided there.
ALTER TABLE runs ADD COLUMN materialized_at INTEGER;
ALTER TABLE runs ADD COLUMN materialized_seq INTEGER;
-- The cap join: a channel's materialized runs in the window, then each
-- one's targets by their primary key (run_id, customer_id).
CREATE INDEX runs_channel_materialized ON runs (channel, materialized_at) WHERE materialized_at IS NOT NULL;
-- The holdout join: a campaign's materialized runs, in order.
CREATE INDEX runs_campaign_materialized ON runs (campaign_uid, materialized_seq) WHERE materialized_seq IS NOT NULL;
