package source

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Postgres reads from a PostgreSQL database with the caller's queries,
// inside a READ ONLY transaction with SET LOCAL statement_timeout. Each
// query must be one SELECT (or WITH, VALUES, TABLE) statement: a COPY TO a
// file or program, a DO block or a CALL is refused before it is sent, as
// READ ONLY does not stop those. Functions with effects outside the
// database (pg_read_file, lo_export, dblink) are only stopped by the
// role's privileges: connect as a role that can read the tables and no
// more, never as a superuser. Rows
// are streamed (pgx reads them off the connection as they come) and read
// in text form, so they go through the same byte-level mapping as CSV.
//
// Either TransactionsQuery (one row per purchase: customer id, timestamp
// (timestamptz, timestamp, date or text), amount, named per Mapping) or
// SummaryQuery (one row per customer, aggregated by the database: id,
// frequency, recency, age, monetary and attribute columns) is required.
// CustomersQuery optionally adds attribute and contact columns; it runs
// first. A summary push-down query might read:
//
//	SELECT customer_id,
//	       count(DISTINCT day) - 1                              AS frequency,
//	       (max(day) - min(day)) / 7.0                          AS recency,
//	       (DATE '2024-12-31' - min(day)) / 7.0                 AS age,
//	       coalesce(avg(day_total) FILTER (WHERE day > first), 0) AS monetary
//	FROM (SELECT customer_id, created_at::date AS day, sum(amount) AS day_total,
//	             min(created_at::date) OVER (PARTITION BY customer_id) AS first
//	      FROM orders GROUP BY customer_id, created_at::date) d
//	GROUP BY customer_id
type Postgres struct {
	// DSN is a libpq connection string or URL. It never appears in errors.
	DSN               string
	TransactionsQuery string
	CustomersQuery    string
	SummaryQuery      string
	Mapping           Mapping
	// StatementTimeout bounds each query (default 5m).
	StatementTimeout time.Duration
}

var _ Reader = (*Postgres)(nil)

// DefaultStatementTimeout is used when Postgres.StatementTimeout is 0.
const DefaultStatementTimeout = 5 * time.Minute

// QueryError is an error from the database while running a query. Its
// message keeps double-quoted words only when they occur in the query
// (identifiers), since other quoted words are usually values from the data.
type QueryError struct {
	Input   string // "transactions", "customers" or "summaries"
	Code    string // SQLSTATE
	Message string
}

func (e *QueryError) Error() string {
	s := fmt.Sprintf("source: %s query: %s", e.Input, e.Message)
	if e.Code != "" {
		s += " (SQLSTATE " + e.Code + ")"
	}
	return s
}

var quoted = regexp.MustCompile(`"[^"]*"`)

func queryError(kind Kind, query string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := quoted.ReplaceAllStringFunc(pe.Message, func(q string) string {
			if len(q) > 2 && strings.Contains(query, q[1:len(q)-1]) {
				return q
			}
			return `"…"`
		})
		return &QueryError{Input: kind.String(), Code: pe.Code, Message: msg}
	}
	return fmt.Errorf("source: %s query: %w", kind, err)
}

// Read runs the queries and streams their rows to sink.
func (p *Postgres) Read(ctx context.Context, sink Sink) (*Report, error) {
	main, kind := p.TransactionsQuery, Transactions
	switch {
	case p.TransactionsQuery != "" && p.SummaryQuery != "":
		return nil, errors.New("source: PostgreSQL: set either a transactions query or a summary query, not both")
	case p.SummaryQuery != "":
		main, kind = p.SummaryQuery, Summaries
	case p.TransactionsQuery == "":
		return nil, errors.New("source: PostgreSQL: a transactions query or a summary query is required")
	}
	for _, q := range []struct {
		kind  Kind
		query string
	}{{Customers, p.CustomersQuery}, {kind, main}} {
		if err := checkQuery(q.kind, q.query); err != nil {
			return nil, err
		}
	}
	pl, err := p.Mapping.compile()
	if err != nil {
		return nil, err
	}
	timeout := p.StatementTimeout
	if timeout <= 0 {
		timeout = DefaultStatementTimeout
	}
	cfg, err := pgx.ParseConfig(p.DSN)
	if err != nil {
		return nil, errors.New("source: malformed PostgreSQL DSN (not shown: it may hold a password)")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("source: PostgreSQL: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("source: PostgreSQL: begin: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(cctx)
	}()
	rep := &Report{}
	if p.CustomersQuery != "" {
		if err := pinSettings(ctx, tx, timeout); err != nil {
			return nil, err
		}
		if err := queryRows(ctx, tx, p.CustomersQuery, pl, Customers, true, sink, rep); err != nil {
			return rep, err
		}
	}
	// Again: the customers query may have changed them for the rest of the
	// transaction (set_config(..., true)), e.g. turned the timeout off.
	if err := pinSettings(ctx, tx, timeout); err != nil {
		return rep, err
	}
	requireExtra := kind == Summaries || p.CustomersQuery == ""
	if err := queryRows(ctx, tx, main, pl, kind, requireExtra, sink, rep); err != nil {
		return rep, err
	}
	return finish(rep, pl.maxRatio)
}

// pinSettings sets the statement timeout and the text forms of values for
// the next query.
func pinSettings(ctx context.Context, tx pgx.Tx, timeout time.Duration) error {
	for _, set := range []string{
		fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds()),
		// Values are read as text: make that text ISO dates in UTC and
		// shortest-exact floats, whatever the role's or database's settings.
		"SET LOCAL TimeZone = 'UTC'",
		"SET LOCAL DateStyle = 'ISO, YMD'",
		"SET LOCAL extra_float_digits = 3",
	} {
		if _, err := tx.Exec(ctx, set); err != nil {
			return fmt.Errorf("source: PostgreSQL: %s: %w", set, err)
		}
	}
	return nil
}

// checkQuery refuses a query that is not a SELECT, WITH, VALUES or TABLE
// statement (after comments and opening parentheses). The READ ONLY
// transaction refuses writes to the database, but not COPY ... TO a server
// file or PROGRAM, nor DO blocks, which would run before the missing result
// columns are noticed. An empty query (not configured) passes.
func checkQuery(kind Kind, query string) error {
	rest := skipSQLNoise(query)
	if rest == "" {
		return nil
	}
	n := 0
	for n < len(rest) && n < 16 && (rest[n]|0x20 >= 'a' && rest[n]|0x20 <= 'z') {
		n++
	}
	switch strings.ToUpper(rest[:n]) {
	case "SELECT", "WITH", "VALUES", "TABLE":
		return nil
	}
	what := "something else"
	if n > 0 {
		what = strings.ToUpper(rest[:n])
	}
	return fmt.Errorf("source: %s query must be a single SELECT (or WITH, VALUES, TABLE) statement, not %s", kind, what)
}

// skipSQLNoise drops leading white space, -- and /* */ comments and
// opening parentheses.
func skipSQLNoise(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			// Block comments nest in PostgreSQL.
			depth, i := 1, 2
			for ; i < len(q) && depth > 0; i++ {
				switch {
				case strings.HasPrefix(q[i:], "/*"):
					depth++
					i++
				case strings.HasPrefix(q[i:], "*/"):
					depth--
					i++
				}
			}
			q = q[i:]
		default:
			return q
		}
	}
}

// typedOID reports whether a column type is read in PostgreSQL's own text
// form (ISO dates, '.' decimals) rather than per the mapping's layout.
func typedOID(oid uint32) bool {
	switch oid {
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID,
		pgtype.NumericOID, pgtype.Float4OID, pgtype.Float8OID,
		pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return true
	}
	return false
}

func queryRows(ctx context.Context, tx pgx.Tx, query string, pl *plan, kind Kind, requireExtra bool,
	sink Sink, rep *Report) error {
	rows, err := tx.Query(ctx, query, pgx.QueryExecModeDescribeExec, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return queryError(kind, query, err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) == 0 {
		// pgx reports a failed statement on the rows, not from Query.
		rows.Close()
		if err := rows.Err(); err != nil {
			return queryError(kind, query, err)
		}
		return fmt.Errorf("source: %s query returns no columns", kind)
	}
	names := make([]string, len(fds))
	for i, fd := range fds {
		names[i] = fd.Name
	}
	b, err := pl.bind(kind, names, func(i int) bool { return typedOID(fds[i].DataTypeOID) }, requireExtra)
	if err != nil {
		return err
	}
	e := newEmitter(b, sink, rep)
	fields := make([][]byte, len(fds))
	var row int64
	for rows.Next() {
		copy(fields, rows.RawValues())
		row++
		if err := e.row(row, fields); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("source: %s query: %w", kind, ctx.Err())
		}
		return queryError(kind, query, err)
	}
	return nil
}
