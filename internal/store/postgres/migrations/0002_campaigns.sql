-- 0002: campaigns and outreach. Runs gain what materialization, sending
-- and measurement need; targets gain a claim token, a not-before time and
-- the data frozen into them; and the records that outlive a run: the
-- contact ledger, holdout assignments, opt-outs and folded tallies.

ALTER TABLE runs
    ADD COLUMN campaign_uid      text NOT NULL DEFAULT '',
    ADD COLUMN segment           text NOT NULL DEFAULT '',
    ADD COLUMN snapshot_id       bigint NOT NULL DEFAULT 0,
    ADD COLUMN scheduled_at      timestamptz,
    -- microseconds
    ADD COLUMN conversion_window bigint NOT NULL DEFAULT 0 CHECK (conversion_window >= 0),
    ADD COLUMN dry_run           boolean NOT NULL DEFAULT false,
    ADD COLUMN phase             text NOT NULL DEFAULT 'Pending' CHECK (phase IN
        ('Pending', 'Materialized', 'Sending', 'Measuring', 'Succeeded', 'Failed', 'Cancelled')),
    -- the start of sending; both groups' conversions count from it
    ADD COLUMN reference_at      timestamptz;
CREATE INDEX runs_campaign_uid ON runs (campaign_uid);
-- Runs of milestone 1 were written target by target: they are past
-- materialization.
UPDATE runs SET phase = 'Materialized' WHERE EXISTS (SELECT 1 FROM targets t WHERE t.run_id = runs.run_id);

ALTER TABLE targets DROP CONSTRAINT targets_grp_check;
-- The foreign key to runs goes: its check, a trigger per row, cost a
-- materialization of 100,000 targets 0.3 s of 1.6 s. The store keeps the
-- rule itself: targets are written only under a lock on their run's row
-- (FOR SHARE in TargetInsert, FOR UPDATE in RunMaterialize), and
-- RunDelete deletes a run's targets with it.
ALTER TABLE targets DROP CONSTRAINT targets_run_id_fkey;
ALTER TABLE targets
    ADD CONSTRAINT targets_grp_check CHECK (grp IN ('treatment', 'holdout', 'excluded')),
    ADD COLUMN claimed_by         text NOT NULL DEFAULT '',
    ADD COLUMN not_before         timestamptz,
    -- frozen at materialization: what sending and measuring need
    ADD COLUMN address            text NOT NULL DEFAULT '',
    ADD COLUMN locale             text NOT NULL DEFAULT '',
    ADD COLUMN time_zone          text NOT NULL DEFAULT '',
    ADD COLUMN fields             jsonb,
    ADD COLUMN base_transactions  bigint NOT NULL DEFAULT 0,
    ADD COLUMN base_spend         double precision NOT NULL DEFAULT 0,
    ADD COLUMN base_last_purchase timestamptz,
    ADD COLUMN expected_value     double precision NOT NULL DEFAULT 0;
-- Claims walk the pending targets of one shard, those due first: NULL (at
-- once) and then the earliest not_before, so a claim reads only due rows
-- while there are enough of them.
DROP INDEX targets_pending;
CREATE INDEX targets_pending ON targets (run_id, shard, not_before NULLS FIRST, customer_id) WHERE state = 'pending';
-- Frequency caps count the ledger now.
DROP INDEX targets_sent;

-- The contact ledger: one entry per treatment target, written when its run
-- is materialized (at = that time), voided when the target ends failed,
-- skipped or cancelled. Caps count the live entries of a channel. It
-- outlives runs: no foreign key.
CREATE TABLE contacts (
    channel     text NOT NULL,
    customer_id text COLLATE "C" NOT NULL,
    campaign    text NOT NULL,
    run_id      text NOT NULL,
    at          timestamptz NOT NULL,
    void        boolean NOT NULL DEFAULT false
);
CREATE INDEX contacts_channel_customer ON contacts (channel, customer_id, at);
-- What milestone 1 sent still counts.
INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void)
SELECT r.channel, t.customer_id, r.campaign, t.run_id, t.sent_at, false
FROM targets t JOIN runs r ON r.run_id = t.run_id
WHERE t.state = 'sent' AND t.sent_at IS NOT NULL;

-- Holdout assignments per (campaign UID, customer): recorded once, never
-- changed, so a customer stays in one group across a campaign's runs.
CREATE TABLE holdout_assignments (
    campaign_uid text NOT NULL,
    customer_id  text COLLATE "C" NOT NULL,
    grp          text NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    PRIMARY KEY (campaign_uid, customer_id)
);

-- Opt-outs per channel.
CREATE TABLE opt_outs (
    channel     text NOT NULL,
    customer_id text COLLATE "C" NOT NULL,
    at          timestamptz NOT NULL,
    via         text NOT NULL DEFAULT '',
    PRIMARY KEY (channel, customer_id)
);

-- The tallies of deleted runs, folded per campaign UID.
CREATE TABLE campaign_tallies (
    campaign_uid text NOT NULL,
    grp          text NOT NULL,
    state        text NOT NULL,
    reason       text NOT NULL,
    n            bigint NOT NULL,
    converted    bigint NOT NULL,
    PRIMARY KEY (campaign_uid, grp, state, reason)
);
