package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
)

const (
	// snapshotColumns are the columns of a snapshot table (layout 1):
	// everything but the id is one codec blob (see package codec for why).
	snapshotColumns = "customer_id, data"
	nSnapshotCols   = 2
	// snapshotLayout is the layout version new snapshot tables get.
	snapshotLayout = 1
	// rowsPerStatement is how many rows one INSERT … VALUES carries.
	rowsPerStatement = 100
	// rowsPerTx is how many rows one transaction of a load carries; the
	// write lock is released between them.
	rowsPerTx = 10000
)

func snapshotTable(id int64) string { return fmt.Sprintf(`"snap_%d"`, id) }

const createSnapshotTable = `CREATE TABLE %s (
	customer_id TEXT NOT NULL,
	data        BLOB NOT NULL
) STRICT`

func insertSQL(id int64, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(snapshotTable(id))
	b.WriteString(" (" + snapshotColumns + ") VALUES ")
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?)")
	}
	return b.String()
}

// SnapshotWrite implements store.Store. The writer pins one connection;
// rows go in 100-row INSERT statements, 10,000 rows per transaction, into
// a table nothing points to yet; the final transaction builds the unique
// index and makes the snapshot current.
func (s *Store) SnapshotWrite(ctx context.Context, p *store.SnapshotWriteParams) (store.SnapshotWriter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	meta, err := json.Marshal(p.Meta)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: encode meta: %w (%w)", p.Source, err, store.ErrInvalid)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", p.Source, wrapErr(err))
	}
	w := &snapshotWriter{s: s, ctx: ctx, conn: conn, source: p.Source, createdAt: s.opts.Now(), meta: meta, erasedThrough: p.ErasedThrough}
	if err := w.begin(); err != nil {
		w.rollback()
		if w.id != 0 {
			_ = dropSnapshot(context.Background(), s, w.id)
		}
		w.close()
		return nil, fmt.Errorf("snapshot of %s: %w", p.Source, wrapErr(err))
	}
	return w, nil
}

type snapshotWriter struct {
	s         *Store
	ctx       context.Context
	conn      *sql.Conn
	source    string
	createdAt time.Time
	meta      []byte
	id        int64
	// erasedThrough: the newest tombstone the caller left out (see
	// store.SnapshotWriteParams.ErasedThrough).
	erasedThrough int64

	insert *sql.Stmt // rowsPerStatement rows
	args   []any     // buffered rows' values
	data   []byte    // buffered rows' data blobs
	rows   int       // rows buffered in args
	inTx   int       // rows written in the open transaction
	txOpen bool
	n      int64
	err    error
	end    bool
}

func (w *snapshotWriter) exec(sql string, args ...any) error {
	_, err := w.conn.ExecContext(w.ctx, sql, args...)
	return err
}

func (w *snapshotWriter) beginTx() error {
	if err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	w.txOpen = true
	return nil
}

func (w *snapshotWriter) commitTx() error {
	w.txOpen = false
	return w.exec("COMMIT")
}

// rollback ends any open transaction, even one whose COMMIT failed
// ("no transaction is active" is ignored), so the connection never goes
// back to the pool inside a transaction.
func (w *snapshotWriter) rollback() {
	w.txOpen = false
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (w *snapshotWriter) begin() error {
	if err := w.beginTx(); err != nil {
		return err
	}
	now := micros(w.createdAt)
	if err := w.exec("INSERT INTO sources (key, updated_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", w.source, now); err != nil {
		return err
	}
	if err := w.conn.QueryRowContext(w.ctx, `INSERT INTO snapshots (source, state, layout, created_at, heartbeat_at, meta)
		VALUES (?, 'writing', ?, ?, ?, ?) RETURNING id`, w.source, snapshotLayout, now, now, string(w.meta)).Scan(&w.id); err != nil {
		return err
	}
	if err := w.exec(fmt.Sprintf(createSnapshotTable, snapshotTable(w.id))); err != nil {
		return err
	}
	if err := w.commitTx(); err != nil {
		return err
	}
	// No automatic checkpoints from this connection during the load: each
	// one costs two fsyncs, and at the default 1000 pages a million-row
	// load would run about forty of them. Commit checkpoints once.
	if err := w.exec("PRAGMA wal_autocheckpoint = 0"); err != nil {
		return err
	}
	var err error
	if w.insert, err = w.conn.PrepareContext(w.ctx, insertSQL(w.id, rowsPerStatement)); err != nil {
		return err
	}
	w.args = make([]any, 0, rowsPerStatement*nSnapshotCols)
	return nil
}

func (w *snapshotWriter) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("snapshot %d of %s: %w", w.id, w.source, wrapErr(err))
	}
	return w.err
}

// Add implements store.SnapshotWriter.
func (w *snapshotWriter) Add(c *customer.Scored) error {
	if w.err != nil {
		return w.err
	}
	if w.end {
		return fmt.Errorf("snapshot %d: Add after Commit or Abort: %w", w.id, store.ErrClosed)
	}
	if err := codec.Check(c); err != nil {
		return w.fail(err)
	}
	start := len(w.data)
	data, err := codec.AppendData(w.data, c)
	if err != nil {
		w.data = w.data[:start]
		return w.fail(err)
	}
	w.data = data
	// The blob is a slice of w.data; a later append that grows w.data
	// copies it elsewhere but leaves this slice's bytes intact.
	w.args = append(w.args, c.ID, data[start:len(data):len(data)])
	w.rows++
	w.n++
	if w.rows == rowsPerStatement {
		if err := w.flush(w.insert); err != nil {
			return err
		}
	}
	return nil
}

// flush executes the buffered rows with stmt (prepared for that many rows)
// and commits the transaction when it is full.
func (w *snapshotWriter) flush(stmt *sql.Stmt) error {
	if w.rows == 0 {
		return nil
	}
	if !w.txOpen {
		if err := w.beginTx(); err != nil {
			return w.fail(err)
		}
	}
	if _, err := stmt.ExecContext(w.ctx, w.args...); err != nil {
		return w.fail(err)
	}
	w.inTx += w.rows
	clear(w.args) // drop references for the GC
	w.args, w.data, w.rows = w.args[:0], w.data[:0], 0
	if w.inTx >= rowsPerTx {
		if err := w.exec("UPDATE snapshots SET heartbeat_at = ? WHERE id = ?", micros(w.s.opts.Now()), w.id); err != nil {
			return w.fail(err)
		}
		if err := w.commitTx(); err != nil {
			return w.fail(err)
		}
		w.inTx = 0
	}
	return nil
}

// Commit implements store.SnapshotWriter.
func (w *snapshotWriter) Commit() (*store.Snapshot, error) {
	if w.end {
		return nil, fmt.Errorf("snapshot %d: Commit after Commit or Abort: %w", w.id, store.ErrClosed)
	}
	if w.err == nil && w.rows > 0 {
		stmt, err := w.conn.PrepareContext(w.ctx, insertSQL(w.id, w.rows))
		if err != nil {
			w.fail(err)
		} else {
			w.flush(stmt)
			stmt.Close()
		}
	}
	if w.err == nil && !w.txOpen {
		if err := w.beginTx(); err != nil {
			w.fail(err)
		}
	}
	if w.err == nil {
		if err := w.dropErased(); err != nil {
			w.fail(fmt.Errorf("leaving out erased customers: %w", err))
		}
	}
	if w.err == nil {
		now := micros(w.s.opts.Now())
		if err := w.exec(fmt.Sprintf("CREATE UNIQUE INDEX %s ON %s (customer_id)",
			fmt.Sprintf(`"snap_%d_customer"`, w.id), snapshotTable(w.id))); err != nil {
			if strings.Contains(err.Error(), "UNIQUE constraint failed") {
				err = fmt.Errorf("duplicate customer id: %w (%w)", err, store.ErrInvalid)
			}
			w.fail(err)
		} else if err := w.exec("UPDATE snapshots SET state = 'committed', customers = ?, heartbeat_at = ? WHERE id = ?", w.n, now, w.id); err != nil {
			w.fail(err)
		} else if err := w.exec("UPDATE sources SET current_snapshot = ?, updated_at = ? WHERE key = ?", w.id, now, w.source); err != nil {
			w.fail(err)
		} else if err := w.commitTx(); err != nil {
			w.fail(fmt.Errorf("commit: %w", err))
		}
	}
	if w.err != nil {
		err := w.err
		_ = w.Abort()
		return nil, err
	}
	w.end = true
	// Move the load from the WAL into the database file now, in one pass
	// with two fsyncs. PASSIVE: it never waits for readers; what it cannot
	// copy yet, a later checkpoint does.
	_, _ = w.conn.ExecContext(w.ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	w.close()
	return &store.Snapshot{ID: w.id, Source: w.source, CreatedAt: w.createdAt, Customers: w.n, Meta: w.meta}, nil
}

// Abort implements store.SnapshotWriter: the rows written so far are
// dropped with their table. If that fails (the process is going away), the
// 'writing' row is left for a later prune.
func (w *snapshotWriter) Abort() error {
	if w.end {
		return nil
	}
	w.end = true
	defer w.close()
	w.rollback()
	ctx, cancel := context.WithTimeout(context.Background(), BusyTimeout)
	defer cancel()
	return dropSnapshot(ctx, w.s, w.id)
}

func (w *snapshotWriter) close() {
	if w.insert != nil {
		w.insert.Close()
	}
	// The connection goes back to the pool: restore the default.
	_, _ = w.conn.ExecContext(context.Background(), "PRAGMA wal_autocheckpoint = 1000")
	w.conn.Close()
}

// dropSnapshot drops a snapshot's table and row in one transaction.
func dropSnapshot(ctx context.Context, s *Store, id int64) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+snapshotTable(id)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM snapshots WHERE id = ?", id)
		return err
	})
}

const snapshotSelect = "SELECT id, source, created_at, customers, meta FROM snapshots"

func scanSnapshot(row interface{ Scan(...any) error }) (*store.Snapshot, error) {
	var sn store.Snapshot
	var created int64
	var meta string
	if err := row.Scan(&sn.ID, &sn.Source, &created, &sn.Customers, &meta); err != nil {
		return nil, err
	}
	sn.CreatedAt = fromMicros(created)
	sn.Meta = json.RawMessage(meta)
	return &sn, nil
}

// SnapshotGetCurrent implements store.Store.
func (s *Store) SnapshotGetCurrent(ctx context.Context, source string) (*store.Snapshot, error) {
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, snapshotSelect+
		" WHERE id = (SELECT current_snapshot FROM sources WHERE key = ?)", source))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("current snapshot of %s: %w", source, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("current snapshot of %s: %w", source, wrapErr(err))
	}
	return sn, nil
}

// SnapshotGetByID implements store.Store.
func (s *Store) SnapshotGetByID(ctx context.Context, id int64) (*store.Snapshot, error) {
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, snapshotSelect+" WHERE id = ? AND state = 'committed'", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("snapshot %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, wrapErr(err))
	}
	return sn, nil
}

// SnapshotList implements store.Store.
func (s *Store) SnapshotList(ctx context.Context, source string) ([]*store.Snapshot, error) {
	rows, err := s.db.QueryContext(ctx, snapshotSelect+" WHERE source = ? AND state = 'committed' ORDER BY id DESC", source)
	if err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", source, wrapErr(err))
	}
	defer rows.Close()
	var out []*store.Snapshot
	for rows.Next() {
		sn, err := scanSnapshot(rows)
		if err != nil {
			return nil, fmt.Errorf("snapshots of %s: %w", source, err)
		}
		out = append(out, sn)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", source, err)
	}
	return out, nil
}

// SnapshotScan implements store.Store. The state check and the scan run on
// one connection inside one read transaction, so a prune cannot drop the
// table between them; a prune during the scan waits for nothing (WAL keeps
// the pages this reader sees).
func (s *Store) SnapshotScan(ctx context.Context, p *store.SnapshotScanParams, fn func(*customer.Scored) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := s.snapshotScan(ctx, p.SnapshotID, fn)
	if err, stopped := unstop(err); stopped {
		return err
	}
	if err != nil {
		return fmt.Errorf("scan snapshot %d: %w", p.SnapshotID, wrapErr(err))
	}
	return nil
}

func (s *Store) snapshotScan(ctx context.Context, id int64, fn func(*customer.Scored) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A deferred transaction: a read snapshot, no write lock.
	if _, err := conn.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck
	var state string
	var layout int
	if err := conn.QueryRowContext(ctx, "SELECT state, layout FROM snapshots WHERE id = ?", id).Scan(&state, &layout); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	}
	if state != "committed" {
		return store.ErrNotFound
	}
	if layout != snapshotLayout {
		return fmt.Errorf("snapshot layout %d is not known to this program", layout)
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+snapshotColumns+" FROM "+snapshotTable(id))
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		rec  customer.Scored
		data sql.RawBytes
		dec  = codec.NewDecoder()
	)
	for rows.Next() {
		if err := rows.Scan(&rec.ID, &data); err != nil {
			return err
		}
		if err := dec.Decode(data, &rec); err != nil {
			return fmt.Errorf("customer %q: %w", rec.ID, err)
		}
		if err := fn(&rec); err != nil {
			return stopErr{err}
		}
	}
	return rows.Err()
}

// SnapshotPrune implements store.Store.
func (s *Store) SnapshotPrune(ctx context.Context, p *store.SnapshotPruneParams) (*store.SnapshotPruneResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	abandonedBefore := p.AbandonedBefore
	if abandonedBefore.IsZero() {
		abandonedBefore = s.opts.Now().Add(-time.Hour)
	}
	res := &store.SnapshotPruneResult{}
	var drop, abandoned []int64
	collect := func(dst *[]int64, q string, args ...any) error {
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			*dst = append(*dst, id)
		}
		return rows.Err()
	}
	if err := collect(&drop, `SELECT id FROM (
			SELECT id FROM snapshots WHERE source = ?1 AND state = 'committed'
			ORDER BY id DESC LIMIT -1 OFFSET ?2)
		WHERE id IS NOT (SELECT current_snapshot FROM sources WHERE key = ?1)
		ORDER BY id`, p.Source, p.Keep); err != nil {
		return nil, fmt.Errorf("prune snapshots of %s: %w", p.Source, wrapErr(err))
	}
	if err := collect(&abandoned, `SELECT id FROM snapshots WHERE source = ? AND state = 'writing' AND heartbeat_at < ? ORDER BY id`,
		p.Source, micros(abandonedBefore)); err != nil {
		return nil, fmt.Errorf("prune snapshots of %s: %w", p.Source, wrapErr(err))
	}
	for _, id := range drop {
		if err := dropSnapshot(ctx, s, id); err != nil {
			return res, fmt.Errorf("prune snapshot %d of %s: %w", id, p.Source, wrapErr(err))
		}
		res.Dropped = append(res.Dropped, id)
	}
	for _, id := range abandoned {
		if err := dropSnapshot(ctx, s, id); err != nil {
			return res, fmt.Errorf("prune abandoned snapshot %d of %s: %w", id, p.Source, wrapErr(err))
		}
		res.Abandoned++
	}
	return res, nil
}

// SnapshotDeleteBySource implements store.Store.
func (s *Store) SnapshotDeleteBySource(ctx context.Context, source string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT id FROM snapshots WHERE source = ?", source)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+snapshotTable(id)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM sources WHERE key = ?", source)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete snapshots of %s: %w", source, wrapErr(err))
	}
	return nil
}
