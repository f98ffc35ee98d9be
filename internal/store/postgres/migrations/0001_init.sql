-- 0001: sources and snapshots, segment membership, runs and targets.

-- A customer source (CustomerSource "namespace/name") and its current
-- snapshot: the pointer row that a load updates in its own transaction.
CREATE TABLE sources (
    key              text PRIMARY KEY,
    current_snapshot bigint,
    updated_at       timestamptz NOT NULL
);

-- One row per snapshot; the customers are in the table snap_<id>.
-- state 'writing' rows exist only inside the loading transaction here (the
-- SQLite driver commits them early); 'committed' rows are readable.
CREATE SEQUENCE snapshot_id_seq;
CREATE TABLE snapshots (
    id           bigint PRIMARY KEY,
    source       text NOT NULL REFERENCES sources (key) ON DELETE CASCADE,
    state        text NOT NULL CHECK (state IN ('writing', 'committed')),
    -- layout of the snap_<id> table: 1 = (customer_id, data codec blob)
    layout       integer NOT NULL,
    created_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    customers    bigint NOT NULL DEFAULT 0,
    meta         jsonb NOT NULL DEFAULT 'null'
);
CREATE INDEX snapshots_source ON snapshots (source, id);

-- Segment membership. Every current member was seen in the segment's
-- snapshot_id, so "last seen" is kept once per segment, not per row (one
-- UPDATE of every member per evaluation would rewrite the whole table).
CREATE TABLE segments (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    snapshot_id bigint NOT NULL,
    size        bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE memberships (
    segment_id       bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id      text COLLATE "C" NOT NULL,
    entered_at       timestamptz NOT NULL,
    entered_snapshot bigint NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX memberships_entered ON memberships (segment_id, entered_snapshot);

-- Campaign runs, frozen at materialization.
CREATE TABLE runs (
    run_id          text PRIMARY KEY,
    campaign        text NOT NULL,
    channel         text NOT NULL,
    settings        jsonb NOT NULL,
    holdout_percent double precision NOT NULL,
    shards          integer NOT NULL CHECK (shards >= 1),
    created_at      timestamptz NOT NULL
);
CREATE INDEX runs_campaign ON runs (campaign);
CREATE INDEX runs_channel ON runs (channel);

-- One row per (run, customer): "once" is enforced by the key.
CREATE TABLE targets (
    run_id       text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    customer_id  text COLLATE "C" NOT NULL,
    grp          text NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    variant      text NOT NULL DEFAULT '',
    shard        integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'claimed', 'sent', 'failed', 'skipped')),
    reason       text NOT NULL DEFAULT '',
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NOT NULL DEFAULT '',
    claimed_at   timestamptz,
    sent_at      timestamptz,
    converted_at timestamptz,
    PRIMARY KEY (run_id, customer_id)
);
-- Claims walk only the pending targets of one shard.
CREATE INDEX targets_pending ON targets (run_id, shard, customer_id) WHERE state = 'pending';
-- Stale-claim takeover walks only the claimed ones.
CREATE INDEX targets_claimed ON targets (run_id, shard, claimed_at) WHERE state = 'claimed';
-- Frequency caps: contacts per customer since a time.
CREATE INDEX targets_sent ON targets (customer_id, sent_at) WHERE state = 'sent';
