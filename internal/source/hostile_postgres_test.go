package source

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/pgtest"
)

// Hostile PostgreSQL queries (issue #19): result columns of the wrong type,
// too few columns, and statements that are not read-only.

func startHostilePostgres(t *testing.T) (dsn string, conn *pgx.Conn) {
	t.Helper()
	dsn = pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, pgSchema+"CREATE SEQUENCE s;"); err != nil {
		t.Fatal(err)
	}
	return dsn, conn
}

func TestPostgresHostileQueries(t *testing.T) {
	t.Parallel()
	dsn, conn := startHostilePostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel) // after the parallel subtests

	t.Run("wrong column types", func(t *testing.T) {
		t.Parallel()
		const id, on = `'c1' AS customer_id`, `DATE '2024-01-31' AS timestamp`
		tx := func(ts, amount string) string {
			return "SELECT " + id + ", " + ts + " AS timestamp, " + amount + " AS amount"
		}
		sum := func(f, r, a, m string) string {
			return fmt.Sprintf("SELECT %s, %s AS frequency, %s AS recency, %s AS age, %s AS monetary", id, f, r, a, m)
		}
		for _, tc := range []struct {
			name    string
			query   string
			summary bool
			day     int32   // accepted transaction
			amount  float64 // accepted transaction
			column  string  // rejected
			reason  string  // rejected; "" when accepted
		}{
			{name: "text amount", query: tx("DATE '2024-01-31'", "'twelve'::text"), column: "amount", reason: reasonDecimal},
			{name: "text amount that is a number", query: tx("DATE '2024-01-31'", "'12.5'::text"), day: day("2024-01-31"), amount: 12.5},
			{name: "boolean amount", query: tx("DATE '2024-01-31'", "true"), column: "amount", reason: reasonDecimal},
			{name: "text timestamp", query: tx("'yesterday'::text", "1"), column: "timestamp", reason: reasonDate},
			{name: "integer timestamp", query: tx("1706659200", "1"), column: "timestamp", reason: reasonDate},
			{name: "interval timestamp", query: tx("interval '1 day'", "1"), column: "timestamp", reason: reasonDate},
			{name: "NULL id", query: "SELECT NULL::text AS customer_id, " + on + ", 1 AS amount", column: "customer_id", reason: reasonMissing},
			{name: "NULL timestamp", query: tx("NULL::timestamptz", "1"), column: "timestamp", reason: reasonMissing},
			{name: "NULL amount", query: tx("DATE '2024-01-31'", "NULL::numeric"), column: "amount", reason: reasonMissing},
			{name: "numeric 1e400", query: tx("DATE '2024-01-31'", "10::numeric ^ 400"), column: "amount", reason: reasonDecimal},
			{name: "numeric -1e400", query: tx("DATE '2024-01-31'", "-(10::numeric ^ 400)"), column: "amount", reason: reasonDecimal},
			{name: "numeric 1e308", query: tx("DATE '2024-01-31'", "10::numeric ^ 308"), day: day("2024-01-31"), amount: 1e308},
			{name: "numeric NaN", query: tx("DATE '2024-01-31'", "'NaN'::numeric"), column: "amount", reason: reasonDecimal},
			{name: "float Infinity", query: tx("DATE '2024-01-31'", "'Infinity'::float8"), column: "amount", reason: reasonDecimal},
			{name: "float -Infinity", query: tx("DATE '2024-01-31'", "'-Infinity'::float8"), column: "amount", reason: reasonDecimal},
			{name: "largest float", query: tx("DATE '2024-01-31'", "1.7976931348623157e308::float8"), day: day("2024-01-31"), amount: math.MaxFloat64},
			{name: "smallest float", query: tx("DATE '2024-01-31'", "5e-324::float8"), day: day("2024-01-31"), amount: 5e-324},
			{name: "date year 0001", query: tx("DATE '0001-01-01'", "1"), day: -719162, amount: 1},
			{name: "timestamptz year 0001", query: tx("'0001-01-01 00:00:00+00'::timestamptz", "1"), day: -719162, amount: 1},
			{name: "timestamptz year 9999", query: tx("'9999-12-31 23:59:59+00'::timestamptz", "1"), day: day("9999-12-31"), amount: 1},
			{name: "date BC", query: tx("DATE '4713-01-01 BC'", "1"), column: "timestamp", reason: reasonDate},
			{name: "date year 10000", query: tx("DATE '10000-01-01'", "1"), column: "timestamp", reason: reasonDate},
			{name: "date infinity", query: tx("DATE 'infinity'", "1"), column: "timestamp", reason: reasonDate},
			{name: "text frequency", query: sum("'x'::text", "0", "1", "0"), summary: true, column: "frequency", reason: reasonInteger},
			{name: "fractional frequency", query: sum("1.5", "0", "1", "0"), summary: true, column: "frequency", reason: reasonInteger},
			{name: "frequency beyond int32", query: sum("2^40", "0", "1", "0"), summary: true, column: "frequency", reason: reasonInteger},
			{name: "NULL frequency", query: sum("NULL::int", "0", "1", "0"), summary: true, column: "frequency", reason: reasonMissing},
			{name: "infinite age", query: sum("0", "0", "'Infinity'::float8", "0"), summary: true, column: "age", reason: reasonDecimal},
			{name: "monetary 1e400", query: sum("1", "0", "1", "10::numeric ^ 400"), summary: true, column: "monetary", reason: reasonDecimal},
			{name: "timestamp age", query: sum("0", "0", "now()", "0"), summary: true, column: "age", reason: reasonDecimal},
		} {
			p := &Postgres{DSN: dsn, Mapping: Mapping{MaxRejectedRatio: 1}, TransactionsQuery: tc.query}
			if tc.summary {
				p.TransactionsQuery, p.SummaryQuery = "", tc.query
			}
			s := &memSink{}
			rep, err := p.Read(ctx, s)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if rep.Rows != 1 || rep.Transactions+rep.Summaries+rep.Rejected != 1 {
				t.Errorf("%s: report %+v: the row is unaccounted for", tc.name, rep)
				continue
			}
			if tc.reason != "" {
				want := []RowError{{Row: 1, Input: mainKind(p).String(), Column: tc.column, Reason: tc.reason}}
				if !reflect.DeepEqual(rep.Samples, want) {
					t.Errorf("%s: samples %+v, want %+v", tc.name, rep.Samples, want)
				}
				continue
			}
			if len(s.txs) != 1 || s.txs[0].Day != tc.day || s.txs[0].Amount != tc.amount {
				t.Errorf("%s: %+v, want day %d amount %v", tc.name, s.txs, tc.day, tc.amount)
			}
		}
	})

	t.Run("too few columns", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			p      Postgres
			column string
			have   []string
		}{
			{Postgres{TransactionsQuery: `SELECT customer_id, amount FROM orders`}, "timestamp", []string{"customer_id", "amount"}},
			{Postgres{TransactionsQuery: `SELECT 'c1', now(), 1`}, "customer_id", []string{"?column?", "now", "?column?"}},
			{Postgres{SummaryQuery: `SELECT customer_id, 1 AS frequency FROM people`}, "recency", []string{"customer_id", "frequency"}},
			{Postgres{CustomersQuery: `SELECT name FROM people`, TransactionsQuery: `SELECT customer_id, created_at AS timestamp, amount FROM orders`},
				"customer_id", []string{"name"}},
		} {
			tc.p.DSN = dsn
			_, err := tc.p.Read(ctx, &memSink{})
			if mc := wantErrAs[*MissingColumnError](t, err); mc.Column != tc.column || !reflect.DeepEqual(mc.Have, tc.have) {
				t.Errorf("%+v", mc)
			}
		}
		_, err := (&Postgres{DSN: dsn, TransactionsQuery: `SELECT`}).Read(ctx, &memSink{})
		wantErrText(t, err, "source: transactions query returns no columns")
	})

	t.Run("statements that are not read-only", func(t *testing.T) {
		t.Parallel()
		copyFile := filepath.Join(os.TempDir(), fmt.Sprintf("source-copy-%d", time.Now().UnixNano()))
		progFile := copyFile + "-program"
		t.Cleanup(func() { os.Remove(copyFile); os.Remove(progFile) })
		const select1 = `SELECT 'c1' AS customer_id, now() AS timestamp, 1 AS amount`
		for _, tc := range []struct {
			p    Postgres
			code string // SQLSTATE, or
			want string // the refusal before the query is sent
		}{
			{Postgres{TransactionsQuery: `INSERT INTO people (customer_id) VALUES ('mallory')`}, "", "transactions query must be a single SELECT (or WITH, VALUES, TABLE) statement, not INSERT"},
			{Postgres{TransactionsQuery: `update orders set amount = 0`}, "", "not UPDATE"},
			{Postgres{TransactionsQuery: `DELETE FROM orders RETURNING customer_id, created_at AS timestamp, amount`}, "", "not DELETE"},
			{Postgres{TransactionsQuery: `DROP TABLE orders`}, "", "not DROP"},
			{Postgres{TransactionsQuery: `TRUNCATE orders`}, "", "not TRUNCATE"},
			{Postgres{TransactionsQuery: "/* harmless /* really */ */ -- yes\n\t(DROP TABLE people)"}, "", "not DROP"},
			{Postgres{TransactionsQuery: `COPY (SELECT 1) TO '` + copyFile + `'`}, "", "not COPY"},
			{Postgres{TransactionsQuery: `COPY (SELECT 1) TO PROGRAM 'touch ` + progFile + `'`}, "", "not COPY"},
			{Postgres{TransactionsQuery: `DO $$ BEGIN DELETE FROM orders; END $$`}, "", "not DO"},
			{Postgres{TransactionsQuery: `COMMIT`}, "", "not COMMIT"},
			{Postgres{TransactionsQuery: `SET TRANSACTION READ WRITE`}, "", "not SET"},
			{Postgres{TransactionsQuery: `"orders"`}, "", "not something else"},
			{Postgres{CustomersQuery: `COPY people TO '` + copyFile + `'`, TransactionsQuery: select1}, "", "customers query must be a single SELECT"},
			{Postgres{SummaryQuery: `CALL refresh()`}, "", "summaries query must be a single SELECT"},
			// What passes the statement check, the READ ONLY transaction refuses.
			{Postgres{TransactionsQuery: `WITH gone AS (DELETE FROM orders RETURNING *) SELECT customer_id, created_at AS timestamp, amount FROM gone`}, "25006", ""},
			{Postgres{TransactionsQuery: `SELECT customer_id, created_at AS timestamp, amount FROM orders FOR UPDATE`}, "25006", ""},
			{Postgres{TransactionsQuery: `SELECT nextval('s')::text AS customer_id, now() AS timestamp, 1 AS amount`}, "25006", ""},
			{Postgres{TransactionsQuery: `SELECT set_config('transaction_read_only', 'off', true) AS customer_id, now() AS timestamp, 1 AS amount`}, "25001", ""},
			{Postgres{TransactionsQuery: select1 + `; DROP TABLE orders`}, "42601", ""},
		} {
			tc.p.DSN = dsn
			_, err := tc.p.Read(ctx, &memSink{})
			if tc.code != "" {
				if qe := wantErrAs[*QueryError](t, err); qe.Code != tc.code {
					t.Errorf("%q: %v, want SQLSTATE %s", tc.p.TransactionsQuery, qe, tc.code)
				}
				continue
			}
			wantErrText(t, err, tc.want)
		}
		// Nothing changed, nothing ran.
		var orders, people int
		var seqCalled bool
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders WHERE amount <> 0), (SELECT count(*) FROM people),
			(SELECT is_called FROM s)`).Scan(&orders, &people, &seqCalled); err != nil {
			t.Fatal(err)
		}
		if orders != 7 || people != 3 || seqCalled {
			t.Errorf("after the hostile queries: %d orders, %d people, sequence called %v", orders, people, seqCalled)
		}
		for _, f := range []string{copyFile, progFile} {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("%s was written by the database", f)
			}
		}
	})

	t.Run("query forms that are allowed", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			query string
			m     Mapping
			txs   int64
		}{
			{"-- the orders\nSELECT customer_id, created_at AS timestamp, amount FROM orders WHERE id <= 3", Mapping{}, 3},
			{"/* a /* nested */ comment */ select customer_id, created_at AS timestamp, amount FROM orders WHERE id = 1", Mapping{}, 1},
			{"(SELECT 'c1' AS customer_id, now() AS timestamp, 1 AS amount) UNION ALL (SELECT 'c2', now(), 2)", Mapping{}, 2},
			{"WITH o AS (SELECT * FROM orders WHERE id <= 2) SELECT customer_id, created_at AS timestamp, amount FROM o", Mapping{}, 2},
			{"VALUES ('c1', DATE '2024-01-31', 5)", Mapping{CustomerID: "column1", Timestamp: "column2", Amount: "column3"}, 1},
			{"TABLE orders", Mapping{Timestamp: "created_at", MaxRejectedRatio: 1}, 4},
		} {
			rep, err := (&Postgres{DSN: dsn, TransactionsQuery: tc.query, Mapping: tc.m}).Read(ctx, &memSink{})
			if err != nil || rep.Transactions != tc.txs {
				t.Errorf("%q: %v, %+v", tc.query, err, rep)
			}
		}
	})

	t.Run("every query runs read-only with the statement timeout", func(t *testing.T) {
		t.Parallel()
		// The customers query turns the timeout off and changes the date
		// style for the rest of the transaction; the next query gets them back.
		s := &memSink{}
		_, err := (&Postgres{DSN: dsn, StatementTimeout: 1500 * time.Millisecond,
			CustomersQuery: `SELECT customer_id, set_config('statement_timeout', '0', true) AS t,
				set_config('DateStyle', 'SQL, DMY', true) AS d FROM people`,
			// The settings the transactions query runs with, as its customer id.
			TransactionsQuery: `SELECT concat_ws('|', current_setting('transaction_read_only'), current_setting('statement_timeout'),
				current_setting('DateStyle')) AS customer_id, DATE '2024-01-31' AS timestamp, 1 AS amount`,
			Mapping: Mapping{MaxRejectedRatio: 1}}).Read(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.txs) != 1 || string(s.txs[0].CustomerID) != "on|1500ms|ISO, YMD" || s.txs[0].Day != day("2024-01-31") {
			t.Fatalf("%+v, want read-only, timeout 1500ms and ISO dates", s.txs)
		}
		// And the timeout does stop the next query.
		_, err = (&Postgres{DSN: dsn, StatementTimeout: 200 * time.Millisecond,
			CustomersQuery:    `SELECT customer_id, set_config('statement_timeout', '0', true) AS t FROM people`,
			TransactionsQuery: `SELECT 'c1' AS customer_id, now() AS timestamp, 1 AS amount FROM pg_sleep(10)`}).Read(ctx, &memSink{})
		if qe := wantErrAs[*QueryError](t, err); qe.Code != "57014" || !strings.Contains(qe.Message, "statement timeout") {
			t.Errorf("%v", qe)
		}
	})
}

// mainKind is the kind of p's main query.
func mainKind(p *Postgres) Kind {
	if p.SummaryQuery != "" {
		return Summaries
	}
	return Transactions
}

func TestCheckQuery(t *testing.T) {
	t.Parallel()
	for q, ok := range map[string]bool{
		"":               true, // not configured
		"SELECT 1":       true,
		"  \n\tselect 1": true,
		"((SELECT 1))":   true,
		"-- x\n-- y\nWITH a AS (SELECT 1) SELECT * FROM a": true,
		"/* /* */ */VALUES (1)":                            true,
		"TABLE t":                                          true,
		"SELECTx":                                          false,
		"EXPLAIN ANALYZE SELECT":                           false,
		"COPY t TO STDOUT":                                 false,
		"-- only a comment":                                true, // nothing to run: PostgreSQL says so
		"/* unterminated":                                  true,
		"'SELECT'":                                         false,
		"SELECTSELECTSELECTSELECT":                         false,
	} {
		err := checkQuery(Transactions, q)
		if (err == nil) != ok {
			t.Errorf("%q: %v", q, err)
		}
	}
}
