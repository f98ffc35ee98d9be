package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// erasureIn is the erased-ids test of the shared erasure statements.
const erasureIn = "IN (SELECT value FROM json_each($2))"

// sqlQuerier is what reading tombstones needs of a *sql.Tx or *sql.Conn.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ErasureApply implements store.Store, in one BEGIN IMMEDIATE transaction:
// SQLite has one writer, so a snapshot's commit (also a write
// transaction) comes wholly before or after it.
func (s *Store) ErasureApply(ctx context.Context, p *store.ErasureApplyParams) (*store.ErasureResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ids := sqlshared.Distinct(p.CustomerIDs)
	newSalt, err := sqlshared.NewSalt()
	if err != nil {
		return nil, err
	}
	idsJSON, err := jsonParam(ids)
	if err != nil {
		return nil, err
	}
	res := &store.ErasureResult{}
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlshared.ErasureSalt, newSalt); err != nil {
			return fmt.Errorf("erasure salt: %w", err)
		}
		var salt []byte
		if err := tx.QueryRowContext(ctx, sqlshared.SaltGet).Scan(&salt); err != nil {
			return fmt.Errorf("erasure salt: %w", err)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO erased_customers (source, hash, fingerprint, erased_at) VALUES (?, ?, ?, ?) ON CONFLICT (source, hash) DO NOTHING`)
		if err != nil {
			return err
		}
		defer ins.Close()
		now := micros(s.opts.Now())
		fingerprints := sqlshared.TombstoneFingerprints(salt, ids)
		for i, h := range sqlshared.TombstoneHashes(salt, ids) {
			r, err := ins.ExecContext(ctx, p.Source, h, fingerprints[i], now)
			if err != nil {
				return fmt.Errorf("tombstones: %w", err)
			}
			n, _ := r.RowsAffected()
			res.Tombstones += n
		}
		res.AlreadyErased = int64(len(ids)) - res.Tombstones
		if res.SnapshotRows, err = eraseFromSnapshots(ctx, tx, p.Source, idsJSON); err != nil {
			return err
		}
		for _, st := range sqlshared.ErasureSteps(erasureIn, "lower(hex(randomblob(16)))", res) {
			r, err := tx.ExecContext(ctx, st.SQL, p.Source, idsJSON)
			if err != nil {
				return err
			}
			n, _ := r.RowsAffected()
			*st.Count += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erasure of %d customers of %s: %w", len(ids), p.Source, wrapErr(err))
	}
	return res, nil
}

// eraseFromSnapshots deletes the ids from every committed snapshot of the
// source and returns how many records went.
func eraseFromSnapshots(ctx context.Context, tx *sql.Tx, source, idsJSON string) (int64, error) {
	rows, err := tx.QueryContext(ctx, sqlshared.ErasureSnapshots, source)
	if err != nil {
		return 0, err
	}
	var snaps []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		snaps = append(snaps, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var total int64
	for _, id := range snaps {
		r, err := tx.ExecContext(ctx, "DELETE FROM "+snapshotTable(id)+" WHERE customer_id IN (SELECT value FROM json_each(?))", idsJSON)
		if err != nil {
			return 0, fmt.Errorf("snapshot %d: %w", id, err)
		}
		if n, _ := r.RowsAffected(); n > 0 {
			total += n
			if _, err := tx.ExecContext(ctx, "UPDATE snapshots SET customers = customers - ? WHERE id = ?", n, id); err != nil {
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
	t, err := tombstonesSince(ctx, s.db, source, 0)
	if err != nil {
		return nil, fmt.Errorf("tombstones of %s: %w", source, wrapErr(err))
	}
	return t, nil
}

// tombstonesSince reads the source's tombstones after sequence number
// since, with the salt.
func tombstonesSince(ctx context.Context, q sqlQuerier, source string, since int64) (*store.Tombstones, error) {
	rows, err := q.QueryContext(ctx, sqlshared.TombstonesSince, source, since)
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
		if err := q.QueryRowContext(ctx, sqlshared.SaltGet).Scan(&salt); err != nil {
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
	err := func() error {
		var salt []byte
		if err := s.db.QueryRowContext(ctx, sqlshared.SaltGet).Scan(&salt); errors.Is(err, sql.ErrNoRows) {
			return nil // nothing was ever erased
		} else if err != nil {
			return err
		}
		ids := sqlshared.Distinct(customerIDs)
		byHash := make(map[string]string, len(ids))
		hexes := make([]string, len(ids))
		for i, h := range sqlshared.TombstoneHashes(salt, ids) {
			byHash[string(h)] = ids[i]
			hexes[i] = fmt.Sprintf("%X", h)
		}
		list, err := jsonParam(hexes)
		if err != nil {
			return err
		}
		rows, err := s.db.QueryContext(ctx, `SELECT hash FROM erased_customers
			WHERE source = ? AND hex(hash) IN (SELECT value FROM json_each(?))`, source, list)
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
	}()
	if err != nil {
		return nil, fmt.Errorf("erased customers of %s: %w", source, wrapErr(err))
	}
	return out, nil
}

// dropErased removes from the snapshot being committed the customers of
// the tombstones recorded after ErasedThrough. It runs in the commit's
// write transaction, which no erasure can run beside.
func (w *snapshotWriter) dropErased() error {
	t, err := tombstonesSince(w.ctx, w.conn, w.source, w.erasedThrough)
	if err != nil || t.Len() == 0 {
		return err
	}
	n, err := deleteErased(w.ctx, w.conn, snapshotTable(w.id), t)
	w.n -= n
	return err
}

// deleteErased deletes from a table keyed by customer_id the customers
// with a tombstone in t, and returns how many went.
func deleteErased(ctx context.Context, conn *sql.Conn, table string, t *store.Tombstones) (int64, error) {
	rows, err := conn.QueryContext(ctx, "SELECT customer_id FROM "+table)
	if err != nil {
		return 0, err
	}
	var erased []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		if t.Erased(id) {
			erased = append(erased, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(erased) == 0 {
		return 0, err
	}
	list, err := jsonParam(erased)
	if err != nil {
		return 0, err
	}
	r, err := conn.ExecContext(ctx, "DELETE FROM "+table+" WHERE customer_id IN (SELECT value FROM json_each(?))", list)
	if err != nil {
		return 0, err
	}
	n, _ := r.RowsAffected()
	return n, nil
}
