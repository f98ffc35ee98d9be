-- 0004: measurement from snapshots. A run is measured against later
-- snapshots of its source: a target records the snapshot that first showed
-- its conversion and its revenue since the baseline; a run its last
-- measured snapshot (measurements never go back). RunDelete keeps each
-- measured run's two groups as a stratum of its campaign, so the pooled
-- (Mantel–Haenszel) figures never change when history limits delete runs,
-- and the folded tallies keep their revenue. Times are Unix microseconds.
ALTER TABLE targets ADD COLUMN converted_snapshot INTEGER;
ALTER TABLE targets ADD COLUMN revenue REAL NOT NULL DEFAULT 0;
-- source is the run's snapshot's source, kept when the run is materialized
-- (the snapshot itself may be pruned while the run is still measured).
ALTER TABLE runs ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN measured_snapshot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN measured_at INTEGER;
UPDATE runs SET source = coalesce((SELECT s.source FROM snapshots s WHERE s.id = runs.snapshot_id), '')
WHERE materialized_at IS NOT NULL OR phase <> 'Pending';
ALTER TABLE campaign_tallies ADD COLUMN revenue REAL NOT NULL DEFAULT 0;
CREATE TABLE run_strata (
    campaign_uid TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    reference_at INTEGER NOT NULL,
    final        INTEGER NOT NULL,
    grp          TEXT NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    assigned     INTEGER NOT NULL,
    converted    INTEGER NOT NULL,
    revenue      REAL NOT NULL,
    PRIMARY KEY (campaign_uid, run_id, grp)
) WITHOUT ROWID, STRICT;
