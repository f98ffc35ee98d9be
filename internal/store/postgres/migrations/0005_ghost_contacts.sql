-- 0005: ghost contacts, the counterfactual contacts of a campaign's
-- holdout. A frequency cap counts a customer's real contacts, and the
-- holdout is never contacted: without ghosts, the cap excluded treatment
-- customers only, so a campaign's holdout share grew run after run and its
-- groups stopped being comparable. Each holdout target of a materialized
-- run (not a dry run) is a ghost contact of its customer for the run's
-- campaign on the run's channel, at the run's materialization (the time of
-- its treatment targets' ledger entries); a later run of the same campaign
-- counts them against its cap, as if the holdout had been contacted. Other
-- campaigns never count them.
--
-- As with the ledger (0003), a stored run's ghosts are its holdout
-- targets; RunDelete copies them into ghost_contacts (the live ones only:
-- nothing can void them once the run is gone). It outlives runs: no
-- foreign key.
CREATE TABLE ghost_contacts (
    campaign_uid text NOT NULL,
    channel      text NOT NULL,
    customer_id  text COLLATE "C" NOT NULL,
    run_id       text NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX ghost_contacts_campaign_customer ON ghost_contacts (campaign_uid, channel, customer_id, at);

-- ghosts_void: RunCancel found that the run contacted nobody (it was
-- cancelled before any treatment target was claimed or sent, so every
-- ledger entry it had is void): then its holdout would not have been
-- contacted either, and its ghosts are void too. Runs cancelled before
-- this migration get the same verdict from their targets.
ALTER TABLE runs ADD COLUMN ghosts_void boolean NOT NULL DEFAULT false;
UPDATE runs SET ghosts_void = true
WHERE phase = 'Cancelled' AND materialized_at IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM targets t WHERE t.run_id = runs.run_id AND t.grp = 'treatment' AND t.state IN ('pending', 'claimed', 'sent'));
