-- 0002: campaigns and outreach. Runs gain what materialization, sending
-- and measurement need; targets gain a claim token, a not-before time and
-- the data frozen into them; and the records that outlive a run: the
-- contact ledger, holdout assignments, opt-outs and folded tallies.
-- Times are INTEGER Unix microseconds (UTC); booleans are 0 and 1.

ALTER TABLE runs ADD COLUMN campaign_uid TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN segment TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN snapshot_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN scheduled_at INTEGER;
-- microseconds
ALTER TABLE runs ADD COLUMN conversion_window INTEGER NOT NULL DEFAULT 0 CHECK (conversion_window >= 0);
ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1));
ALTER TABLE runs ADD COLUMN phase TEXT NOT NULL DEFAULT 'Pending' CHECK (phase IN
    ('Pending', 'Materialized', 'Sending', 'Measuring', 'Succeeded', 'Failed', 'Cancelled'));
-- the start of sending; both groups' conversions count from it
ALTER TABLE runs ADD COLUMN reference_at INTEGER;
CREATE INDEX runs_campaign_uid ON runs (campaign_uid);
-- Runs of milestone 1 were written target by target: they are past
-- materialization.
UPDATE runs SET phase = 'Materialized' WHERE EXISTS (SELECT 1 FROM targets t WHERE t.run_id = runs.run_id);

-- SQLite cannot change a CHECK constraint in place: targets is rebuilt.
CREATE TABLE targets_v2 (
    run_id             TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    customer_id        TEXT NOT NULL,
    grp                TEXT NOT NULL CHECK (grp IN ('treatment', 'holdout', 'excluded')),
    variant            TEXT NOT NULL DEFAULT '',
    shard              INTEGER NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'sent', 'failed', 'skipped')),
    reason             TEXT NOT NULL DEFAULT '',
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT NOT NULL DEFAULT '',
    claimed_at         INTEGER,
    sent_at            INTEGER,
    converted_at       INTEGER,
    claimed_by         TEXT NOT NULL DEFAULT '',
    not_before         INTEGER,
    -- frozen at materialization: what sending and measuring need
    address            TEXT NOT NULL DEFAULT '',
    locale             TEXT NOT NULL DEFAULT '',
    time_zone          TEXT NOT NULL DEFAULT '',
    fields             TEXT,
    base_transactions  INTEGER NOT NULL DEFAULT 0,
    base_spend         REAL NOT NULL DEFAULT 0,
    base_last_purchase INTEGER,
    expected_value     REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID, STRICT;
INSERT INTO targets_v2 (run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_at, sent_at, converted_at)
SELECT run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_at, sent_at, converted_at FROM targets;
DROP TABLE targets;
ALTER TABLE targets_v2 RENAME TO targets;
-- Claims walk the pending targets of one shard, those due first: NULL (at
-- once; SQLite sorts NULL first) and then the earliest not_before.
CREATE INDEX targets_pending ON targets (run_id, shard, not_before, customer_id) WHERE state = 'pending';
CREATE INDEX targets_claimed ON targets (run_id, shard, claimed_at) WHERE state = 'claimed';

-- The contact ledger: one entry per treatment target, written when its run
-- is materialized (at = that time), voided when the target ends failed,
-- skipped or cancelled. Caps count the live entries of a channel. It
-- outlives runs: no foreign key.
CREATE TABLE contacts (
    channel     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    void        INTEGER NOT NULL DEFAULT 0 CHECK (void IN (0, 1))
) STRICT;
CREATE INDEX contacts_channel_customer ON contacts (channel, customer_id, at);
-- What milestone 1 sent still counts.
INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void)
SELECT r.channel, t.customer_id, r.campaign, t.run_id, t.sent_at, 0
FROM targets t JOIN runs r ON r.run_id = t.run_id
WHERE t.state = 'sent' AND t.sent_at IS NOT NULL;

-- Holdout assignments per (campaign UID, customer): recorded once, never
-- changed, so a customer stays in one group across a campaign's runs.
CREATE TABLE holdout_assignments (
    campaign_uid TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    grp          TEXT NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    PRIMARY KEY (campaign_uid, customer_id)
) WITHOUT ROWID, STRICT;

-- Opt-outs per channel.
CREATE TABLE opt_outs (
    channel     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    at          INTEGER NOT NULL,
    via         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel, customer_id)
) WITHOUT ROWID, STRICT;

-- The tallies of deleted runs, folded per campaign UID.
CREATE TABLE campaign_tallies (
    campaign_uid TEXT NOT NULL,
    grp          TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    n            INTEGER NOT NULL,
    converted    INTEGER NOT NULL,
    PRIMARY KEY (campaign_uid, grp, state, reason)
) WITHOUT ROWID, STRICT;
