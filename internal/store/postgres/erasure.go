package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// erasureIn is the erased-ids test of the shared erasure statements.
const erasureIn = "= ANY($2::text[])"

// erasureLock serializes an erasure of a source with the commits of the
// source's snapshots (a transaction-scoped advisory lock): a commit either
// comes first, and the erasure finds the committed snapshot, or after, and
// finds the tombstones (snapshotWriter.dropErased).
const erasureLock = `SELECT pg_advisory_xact_lock(hashtextextended('retention-erasure/' || $1, 0))`

// erasureLockShared is the same lock taken by the transactions that must
// not see an erasure commit half-way through (a snapshot's commit, a
// membership apply, a run's materialization); they do not block one
// another.
const erasureLockShared = `SELECT pg_advisory_xact_lock_shared(hashtextextended('retention-erasure/' || $1, 0))`

// withoutErasedMembers leaves the erased customers of the snapshot's
// source out of an apply's members (or entries), under the source's
// erasure lock: a member list computed before an erasure that committed
// first cannot bring an erased customer back, and no erasure commits
// while the apply runs.
func withoutErasedMembers(ctx context.Context, tx pgx.Tx, p *store.MembershipApplyParams) error {
	var source string
	err := tx.QueryRow(ctx, "SELECT source FROM snapshots WHERE id = $1", p.SnapshotID).Scan(&source)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // the apply reports the snapshot
	}
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, erasureLockShared, source); err != nil {
		return err
	}
	t, err := tombstonesSince(ctx, tx, source, 0)
	if err != nil || t.Len() == 0 {
		return err
	}
	if p.Changes != nil {
		c := *p.Changes
		c.Entered = store.WithoutErased(c.Entered, t)
		p.Changes = &c
		return nil
	}
	p.Members = store.WithoutErased(p.Members, t)
	return nil
}

// ErasureApply implements store.Store, in one transaction.
func (s *Store) ErasureApply(ctx context.Context, p *store.ErasureApplyParams) (*store.ErasureResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ids := sqlshared.Distinct(p.CustomerIDs)
	newSalt, err := sqlshared.NewSalt()
	if err != nil {
		return nil, err
	}
	res := &store.ErasureResult{}
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, erasureLock, p.Source); err != nil {
			return err
		}
		salt, err := erasureSalt(ctx, tx, newSalt)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO erased_customers (source, hash, fingerprint, erased_at)
			SELECT $1, h, f, $3 FROM unnest($2::bytea[], $4::bigint[]) AS t(h, f) ON CONFLICT (source, hash) DO NOTHING`,
			p.Source, sqlshared.TombstoneHashes(salt, ids), s.opts.Now(), sqlshared.TombstoneFingerprints(salt, ids))
		if err != nil {
			return fmt.Errorf("tombstones: %w", err)
		}
		res.Tombstones = tag.RowsAffected()
		res.AlreadyErased = int64(len(ids)) - res.Tombstones
		if res.SnapshotRows, err = eraseFromSnapshots(ctx, tx, p.Source, ids); err != nil {
			return err
		}
		for _, st := range sqlshared.ErasureSteps(erasureIn, "md5(random()::text || clock_timestamp()::text)", res) {
			tag, err := tx.Exec(ctx, st.SQL, p.Source, ids)
			if err != nil {
				return err
			}
			*st.Count += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erasure of %d customers of %s: %w", len(ids), p.Source, err)
	}
	return res, nil
}

// erasureSalt makes the store's salt (from newSalt) unless it exists, and
// returns it.
func erasureSalt(ctx context.Context, q pgx.Tx, newSalt []byte) ([]byte, error) {
	if _, err := q.Exec(ctx, sqlshared.ErasureSalt, newSalt); err != nil {
		return nil, fmt.Errorf("erasure salt: %w", err)
	}
	var salt []byte
	if err := q.QueryRow(ctx, sqlshared.SaltGet).Scan(&salt); err != nil {
		return nil, fmt.Errorf("erasure salt: %w", err)
	}
	return salt, nil
}

// eraseFromSnapshots deletes the ids from every committed snapshot of the
// source and returns how many records went.
func eraseFromSnapshots(ctx context.Context, tx pgx.Tx, source string, ids []string) (int64, error) {
	rows, err := tx.Query(ctx, sqlshared.ErasureSnapshots, source)
	if err != nil {
		return 0, err
	}
	snaps, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	var total int64
	for _, id := range snaps {
		tag, err := tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE customer_id = ANY($1::text[])", snapshotTable(id)), ids)
		if err != nil {
			return 0, fmt.Errorf("snapshot %d: %w", id, err)
		}
		if n := tag.RowsAffected(); n > 0 {
			total += n
			if _, err := tx.Exec(ctx, "UPDATE snapshots SET customers = customers - $2 WHERE id = $1", id, n); err != nil {
				return 0, fmt.Errorf("snapshot %d: %w", id, err)
			}
		}
	}
	return total, nil
}

// TombstonesGet implements store.Store.
func (s *Store) TombstonesGet(ctx context.Context, source string) (*store.Tombstones, error) {
	if err := store.CheckKey("source", source); err != nil {
		return nil, err
	}
	var t *store.Tombstones
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		t, err = tombstonesSince(ctx, c, source, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tombstones of %s: %w", source, err)
	}
	return t, nil
}

// tombstonesSince reads the source's tombstones after sequence number
// since, with the salt.
func tombstonesSince(ctx context.Context, q querier, source string, since int64) (*store.Tombstones, error) {
	rows, err := q.Query(ctx, sqlshared.TombstonesSince, source, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		hashes       [][]byte
		fingerprints []int64
		through      int64
	)
	for rows.Next() {
		var h []byte
		var f int64
		if err := rows.Scan(&through, &h, &f); err != nil {
			return nil, err
		}
		hashes, fingerprints = append(hashes, h), append(fingerprints, f)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var salt []byte
	if len(hashes) > 0 {
		if err := q.QueryRow(ctx, sqlshared.SaltGet).Scan(&salt); err != nil {
			return nil, fmt.Errorf("erasure salt: %w", err)
		}
	}
	return store.NewTombstones(salt, through, hashes, fingerprints), nil
}

// ErasedFilter implements store.Store.
func (s *Store) ErasedFilter(ctx context.Context, source string, customerIDs []string) (map[string]bool, error) {
	if err := store.CheckKey("source", source); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	if len(customerIDs) == 0 {
		return out, nil
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var salt []byte
		if err := c.QueryRow(ctx, sqlshared.SaltGet).Scan(&salt); errors.Is(err, pgx.ErrNoRows) {
			return nil // nothing was ever erased
		} else if err != nil {
			return err
		}
		ids := sqlshared.Distinct(customerIDs)
		byHash := make(map[string]string, len(ids))
		hashes := sqlshared.TombstoneHashes(salt, ids)
		for i, h := range hashes {
			byHash[string(h)] = ids[i]
		}
		rows, err := c.Query(ctx, "SELECT hash FROM erased_customers WHERE source = $1 AND hash = ANY($2::bytea[])", source, hashes)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h []byte
			if err := rows.Scan(&h); err != nil {
				return err
			}
			out[byHash[string(h)]] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("erased customers of %s: %w", source, err)
	}
	return out, nil
}

// dropErased removes from the snapshot being committed the customers of
// the tombstones recorded after ErasedThrough. It runs in the commit's
// transaction, under the source's erasure lock.
func (w *snapshotWriter) dropErased() error {
	ctx := w.ctx
	if _, err := w.tx.Exec(ctx, erasureLockShared, w.source); err != nil {
		return err
	}
	t, err := tombstonesSince(ctx, w.tx, w.source, w.erasedThrough)
	if err != nil || t.Len() == 0 {
		return err
	}
	table := snapshotTable(w.id)
	rows, err := w.tx.Query(ctx, "SELECT customer_id FROM "+table)
	if err != nil {
		return err
	}
	var erased []string
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		if t.Erased(id) {
			erased = append(erased, id)
		}
		return nil
	})
	if err != nil || len(erased) == 0 {
		return err
	}
	tag, err := w.tx.Exec(ctx, "DELETE FROM "+table+" WHERE customer_id = ANY($1::text[])", erased)
	if err != nil {
		return err
	}
	w.n -= tag.RowsAffected()
	return nil
}
