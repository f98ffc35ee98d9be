-- 0006: a version per segment membership, for incremental applies. Every
-- MembershipApply (full or incremental) increments it, so the first apply
-- leaves version 1. A caller that remembers the members of a version
-- sends only the customers that entered and exited since; the apply
-- refuses them (ErrBaseMoved) when the stored version is another one.
-- Segments applied before this migration are at version 0, which no
-- caller can name as a base: their next apply is a full one.
ALTER TABLE segments ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
