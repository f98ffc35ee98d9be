package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
)

// snapshotColumns are the columns of a snapshot table (layout 1), in COPY
// order: everything but the id is one codec blob (see package codec for
// why).
const snapshotColumns = "customer_id, data"

// snapshotLayout is the layout version new snapshot tables get; it is
// recorded per snapshot so that a later layout can be read beside it.
const snapshotLayout = 1

func snapshotTable(id int64) string { return pgx.Identifier{fmt.Sprintf("snap_%d", id)}.Sanitize() }

const createSnapshotTable = `CREATE TABLE %s (
	customer_id text COLLATE "C" NOT NULL,
	data        bytea NOT NULL
)`

// SnapshotWrite implements store.Store. The writer holds one connection and
// one transaction until Commit or Abort: the snapshot table is created,
// filled by a binary COPY streamed from Add, indexed, and made current in
// that transaction.
func (s *Store) SnapshotWrite(ctx context.Context, p *store.SnapshotWriteParams) (store.SnapshotWriter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	meta, err := json.Marshal(p.Meta)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: encode meta: %w (%w)", p.Source, err, store.ErrInvalid)
	}
	now := s.opts.Now()
	// The source row outside the load's transaction, so concurrent loads of
	// one source do not wait on each other's insert.
	if err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "INSERT INTO sources (key, updated_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", p.Source, now)
		return err
	}); err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", p.Source, err)
	}

	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", p.Source, err)
	}
	w := &snapshotWriter{s: s, ctx: ctx, conn: conn, source: p.Source, createdAt: now, meta: meta, erasedThrough: p.ErasedThrough}
	if err := w.begin(); err != nil {
		w.release()
		return nil, fmt.Errorf("snapshot of %s: %w", p.Source, err)
	}
	return w, nil
}

type snapshotWriter struct {
	s         *Store
	ctx       context.Context
	conn      *pgx.Conn
	tx        pgx.Tx
	source    string
	createdAt time.Time
	meta      []byte
	id        int64
	// erasedThrough: the newest tombstone the caller left out (see
	// store.SnapshotWriteParams.ErasedThrough).
	erasedThrough int64

	pw   *io.PipeWriter
	done chan error // the COPY's result
	buf  []byte
	n    int64
	err  error // sticky: the first failure
	end  bool  // Commit or Abort ran
}

// flushSize is how much encoded COPY data is buffered before it is handed
// to the connection.
const flushSize = 256 << 10

var errCopyEnded = errors.New("COPY already ended")

var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

func (w *snapshotWriter) begin() error {
	ctx := w.ctx
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	w.tx = tx
	if err := tx.QueryRow(ctx, "SELECT nextval('snapshot_id_seq')").Scan(&w.id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO snapshots (id, source, state, layout, created_at, heartbeat_at, meta)
		VALUES ($1, $2, 'writing', $3, $4, $4, $5)`, w.id, w.source, snapshotLayout, w.createdAt, string(w.meta)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(createSnapshotTable, snapshotTable(w.id))); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	w.pw = pw
	w.done = make(chan error, 1)
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", snapshotTable(w.id), snapshotColumns)
	go func() {
		_, err := w.conn.PgConn().CopyFrom(ctx, pr, sql)
		if err != nil {
			pr.CloseWithError(err) // unblocks a pending Add
		} else {
			pr.CloseWithError(errCopyEnded)
		}
		w.done <- err
	}()
	w.buf = append(make([]byte, 0, flushSize+64<<10), copyHeader...)
	return nil
}

func (w *snapshotWriter) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("snapshot %d of %s: %w", w.id, w.source, err)
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
	b := w.buf
	mark := len(b)
	b = binary.BigEndian.AppendUint16(b, 2)
	b = appendText(b, c.ID)
	lenAt := len(b)
	b = append(b, 0, 0, 0, 0)
	b, err := codec.AppendData(b, c)
	if err != nil {
		w.buf = w.buf[:mark]
		return w.fail(err)
	}
	binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
	w.buf = b
	w.n++
	if len(w.buf) >= flushSize {
		return w.flush()
	}
	return nil
}

func (w *snapshotWriter) flush() error {
	if _, err := w.pw.Write(w.buf); err != nil {
		return w.fail(fmt.Errorf("copy: %w", err))
	}
	w.buf = w.buf[:0]
	return nil
}

// Commit implements store.SnapshotWriter.
func (w *snapshotWriter) Commit() (*store.Snapshot, error) {
	if w.end {
		return nil, fmt.Errorf("snapshot %d: Commit after Commit or Abort: %w", w.id, store.ErrClosed)
	}
	if w.err != nil {
		err := w.err
		_ = w.Abort()
		return nil, err
	}
	ctx := w.ctx
	w.buf = binary.BigEndian.AppendUint16(w.buf, 0xffff) // trailer: -1
	if err := w.flush(); err != nil {
		_ = w.Abort()
		return nil, err
	}
	w.pw.Close()
	err := <-w.done
	w.done = nil
	if err != nil {
		w.fail(fmt.Errorf("copy: %w", err))
		err := w.err
		_ = w.Abort()
		return nil, err
	}
	w.end = true
	defer w.release()
	table := snapshotTable(w.id)
	if err := w.dropErased(); err != nil {
		_ = w.tx.Rollback(context.Background())
		return nil, w.fail(fmt.Errorf("leaving out erased customers: %w", err))
	}
	// The key after the load: one sort instead of a million index inserts.
	if _, err := w.tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (customer_id)", table)); err != nil {
		_ = w.tx.Rollback(context.Background())
		if pgCode(err) == codeUniqueViolation {
			return nil, fmt.Errorf("snapshot %d of %s: duplicate customer id: %w (%w)", w.id, w.source, err, store.ErrInvalid)
		}
		return nil, w.fail(err)
	}
	// Statistics now, not when autovacuum gets to it: the first reads of a
	// new snapshot (segment evaluation, a run's audience join) are planned
	// with them (without, a million-row join was planned as a nested loop
	// over an estimate of a few dozen rows).
	if _, err := w.tx.Exec(ctx, "ANALYZE "+table); err != nil {
		_ = w.tx.Rollback(context.Background())
		return nil, w.fail(err)
	}
	now := w.s.opts.Now()
	if _, err := w.tx.Exec(ctx, "UPDATE snapshots SET state = 'committed', customers = $2, heartbeat_at = $3 WHERE id = $1", w.id, w.n, now); err != nil {
		_ = w.tx.Rollback(context.Background())
		return nil, w.fail(err)
	}
	if _, err := w.tx.Exec(ctx, "UPDATE sources SET current_snapshot = $2, updated_at = $3 WHERE key = $1", w.source, w.id, now); err != nil {
		_ = w.tx.Rollback(context.Background())
		return nil, w.fail(err)
	}
	if err := w.tx.Commit(ctx); err != nil {
		return nil, w.fail(fmt.Errorf("commit: %w", err))
	}
	return &store.Snapshot{ID: w.id, Source: w.source, CreatedAt: w.createdAt, Customers: w.n, Meta: w.meta}, nil
}

// Abort implements store.SnapshotWriter.
func (w *snapshotWriter) Abort() error {
	if w.end {
		return nil
	}
	w.end = true
	defer w.release()
	if w.done != nil {
		w.pw.CloseWithError(errors.New("snapshot aborted"))
		<-w.done
		w.done = nil
	}
	if w.tx != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// On failure the connection is discarded on release and the
		// server rolls the transaction back.
		_ = w.tx.Rollback(ctx)
	}
	return nil
}

func (w *snapshotWriter) release() {
	if w.conn != nil {
		w.s.pool.release(w.conn)
		w.conn = nil
	}
}

func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

const snapshotSelect = "SELECT id, source, created_at, customers, meta::text FROM snapshots"

func scanSnapshot(row pgx.Row) (*store.Snapshot, error) {
	var sn store.Snapshot
	var meta string
	if err := row.Scan(&sn.ID, &sn.Source, &sn.CreatedAt, &sn.Customers, &meta); err != nil {
		return nil, err
	}
	sn.CreatedAt = sn.CreatedAt.UTC()
	sn.Meta = json.RawMessage(meta)
	return &sn, nil
}

// SnapshotGetCurrent implements store.Store.
func (s *Store) SnapshotGetCurrent(ctx context.Context, source string) (*store.Snapshot, error) {
	var sn *store.Snapshot
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		sn, err = scanSnapshot(c.QueryRow(ctx, snapshotSelect+
			" WHERE id = (SELECT current_snapshot FROM sources WHERE key = $1)", source))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("current snapshot of %s: %w", source, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("current snapshot of %s: %w", source, err)
	}
	return sn, nil
}

// SnapshotGetByID implements store.Store.
func (s *Store) SnapshotGetByID(ctx context.Context, id int64) (*store.Snapshot, error) {
	var sn *store.Snapshot
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		sn, err = scanSnapshot(c.QueryRow(ctx, snapshotSelect+" WHERE id = $1 AND state = 'committed'", id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("snapshot %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, err)
	}
	return sn, nil
}

// SnapshotList implements store.Store.
func (s *Store) SnapshotList(ctx context.Context, source string) ([]*store.Snapshot, error) {
	var out []*store.Snapshot
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, snapshotSelect+" WHERE source = $1 AND state = 'committed' ORDER BY id DESC", source)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			sn, err := scanSnapshot(rows)
			if err != nil {
				return err
			}
			out = append(out, sn)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", source, err)
	}
	return out, nil
}

// SnapshotScan implements store.Store. Rows are read in binary format and
// decoded straight from the connection's buffer into one reused record.
func (s *Store) SnapshotScan(ctx context.Context, p *store.SnapshotScanParams, fn func(*customer.Scored) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var state string
		var layout int
		if err := c.QueryRow(ctx, "SELECT state, layout FROM snapshots WHERE id = $1", p.SnapshotID).Scan(&state, &layout); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
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
		var rec customer.Scored
		dec := codec.NewDecoder()
		scan := func(rows pgx.Rows) error {
			v := rows.RawValues()
			if len(v) != 2 {
				return fmt.Errorf("unexpected row shape")
			}
			rec.ID = string(v[0])
			if err := dec.Decode(v[1], &rec); err != nil {
				return fmt.Errorf("customer %q: %w", rec.ID, err)
			}
			return nil
		}
		return streamRows(ctx, c, scan, func() error { return fn(&rec) },
			"SELECT "+snapshotColumns+" FROM "+snapshotTable(p.SnapshotID), pgx.QueryResultFormats{pgx.BinaryFormatCode})
	})
	if stop, ok := stopped(err); ok {
		return stop
	}
	if err != nil {
		if pgCode(err) == codeUndefinedTable {
			err = store.ErrNotFound
		}
		return fmt.Errorf("scan snapshot %d: %w", p.SnapshotID, err)
	}
	return nil
}

// SnapshotPrune implements store.Store. Each snapshot is dropped in its own
// short transaction; a DROP waits for scans still reading that snapshot.
func (s *Store) SnapshotPrune(ctx context.Context, p *store.SnapshotPruneParams) (*store.SnapshotPruneResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	res := &store.SnapshotPruneResult{}
	var drop []int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id FROM (
				SELECT id FROM snapshots WHERE source = $1 AND state = 'committed'
				ORDER BY id DESC OFFSET $2) old
			WHERE id IS DISTINCT FROM (SELECT current_snapshot FROM sources WHERE key = $1)
			ORDER BY id`, p.Source, p.Keep)
		if err != nil {
			return err
		}
		drop, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("prune snapshots of %s: %w", p.Source, err)
	}
	for _, id := range drop {
		if err := s.withTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+snapshotTable(id)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DELETE FROM snapshots WHERE id = $1", id)
			return err
		}); err != nil {
			return res, fmt.Errorf("prune snapshot %d of %s: %w", id, p.Source, err)
		}
		res.Dropped = append(res.Dropped, id)
	}
	return res, nil
}

// SnapshotDeleteBySource implements store.Store.
func (s *Store) SnapshotDeleteBySource(ctx context.Context, source string) error {
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id FROM snapshots WHERE source = $1", source)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+snapshotTable(id)); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, "DELETE FROM sources WHERE key = $1", source)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete snapshots of %s: %w", source, err)
	}
	return nil
}
