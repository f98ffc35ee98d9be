-- 0007: erasure on request (GDPR Art. 17). An erased customer is removed
-- from every snapshot, membership, target, ledger entry and opt-out of its
-- source (ErasureApply); what is kept is a tombstone, the salted SHA-256
-- of the source's customer id, that later snapshots are checked against,
-- so a re-import does not bring the customer back.
--
-- One salt per store, made by the first erasure: the hashes cannot be
-- compared with another store's or recomputed from a list of ids without
-- it. seq orders the tombstones, so a snapshot writer can ask for those
-- recorded since it started (an erasure that ran while it was written).
CREATE TABLE erasure_salt (
    id   integer PRIMARY KEY CHECK (id = 1),
    salt bytea NOT NULL
);
CREATE TABLE erased_customers (
    seq       bigserial PRIMARY KEY,
    source    text NOT NULL,
    hash      bytea NOT NULL,
    -- FNV-1a of the salt and the id: the fast check a source read makes of
    -- every row before the SHA-256 (store.TombstoneFingerprint).
    fingerprint bigint NOT NULL,
    erased_at timestamptz NOT NULL,
    UNIQUE (source, hash)
);

-- The records that outlive a run now say which source their customer is
-- of, so an erasure removes that source's entries only (customer ids are
-- per source). Entries recorded before this migration have '' and are
-- removed by customer id alone.
ALTER TABLE contacts ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE ghost_contacts ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE holdout_assignments ADD COLUMN source text NOT NULL DEFAULT '';
