-- 0001: sources and snapshots, segment membership, runs and targets.
-- Times are INTEGER Unix microseconds (UTC). Tables are STRICT.

-- A customer source and its current snapshot: the pointer row a load
-- updates in its final transaction.
CREATE TABLE sources (
    key              TEXT PRIMARY KEY,
    current_snapshot INTEGER,
    updated_at       INTEGER NOT NULL
) STRICT;

-- One row per snapshot; the customers are in the table snap_<id>. A load
-- commits in transactions of about 10,000 rows so that other writers (the
-- outreach runners) are not locked out for its whole duration: the row is
-- 'writing' until the final transaction makes it 'committed' and current.
-- heartbeat_at advances with every transaction; a 'writing' row whose
-- heartbeat stopped belongs to a dead writer and is dropped by a prune.
-- AUTOINCREMENT: an id is never reused after its snapshot is dropped.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL REFERENCES sources (key) ON DELETE CASCADE,
    state        TEXT NOT NULL CHECK (state IN ('writing', 'committed')),
    -- layout of the snap_<id> table: 1 = (customer_id, data codec blob)
    layout       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    customers    INTEGER NOT NULL DEFAULT 0,
    meta         TEXT NOT NULL DEFAULT 'null'
) STRICT;
CREATE INDEX snapshots_source ON snapshots (source, id);

-- Segment membership; "last seen" is the segment's snapshot_id (every
-- current member was seen in it).
CREATE TABLE segments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL UNIQUE,
    snapshot_id INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE memberships (
    segment_id       INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id      TEXT NOT NULL,
    entered_at       INTEGER NOT NULL,
    entered_snapshot INTEGER NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX memberships_entered ON memberships (segment_id, entered_snapshot);

-- Campaign runs, frozen at materialization.
CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    campaign        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    settings        TEXT NOT NULL,
    holdout_percent REAL NOT NULL,
    shards          INTEGER NOT NULL CHECK (shards >= 1),
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_campaign ON runs (campaign);
CREATE INDEX runs_channel ON runs (channel);

-- One row per (run, customer): "once" is enforced by the key.
CREATE TABLE targets (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    customer_id  TEXT NOT NULL,
    grp          TEXT NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    variant      TEXT NOT NULL DEFAULT '',
    shard        INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'sent', 'failed', 'skipped')),
    reason       TEXT NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    claimed_at   INTEGER,
    sent_at      INTEGER,
    converted_at INTEGER,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX targets_pending ON targets (run_id, shard, customer_id) WHERE state = 'pending';
CREATE INDEX targets_claimed ON targets (run_id, shard, claimed_at) WHERE state = 'claimed';
CREATE INDEX targets_sent ON targets (customer_id, sent_at) WHERE state = 'sent';
