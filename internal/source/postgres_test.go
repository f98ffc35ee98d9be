package source

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
)

const pgSchema = `
CREATE TABLE orders (
	id          bigserial PRIMARY KEY,
	customer_id text,
	created_at  timestamptz,
	amount      numeric(12,2),
	amount_f    float8,
	day         date,
	day_text    text
);
INSERT INTO orders (customer_id, created_at, amount, amount_f, day, day_text) VALUES
	('c1',     '2024-01-31 23:30:00-02', 23.50, 23.5, '2024-01-31', '20240131'),
	('نیلوفر', '2024-02-01 10:00:00+00', 7.25, 7.25, '2024-02-01', '20240201'),
	('c1',     '2024-02-10 00:00:00+00', 10.00, 10, '2024-02-10', '20240210'),
	(NULL,     '2024-02-11 00:00:00+00', 1.00, 1, '2024-02-11', '20240211'),
	('c2',     NULL, 1.00, 1, NULL, NULL),
	('c3',     '2024-02-12 00:00:00+00', -5.00, 'NaN', '2024-02-12', 'garbage'),
	('c4',     'infinity', 1.00, 1, 'infinity', '20240230');
CREATE TABLE people (
	customer_id text PRIMARY KEY,
	name text, vip boolean, score numeric, since timestamptz, email text, optout text
);
INSERT INTO people VALUES
	('c1', 'Ann', true, 4.5, '2020-05-01 10:00:00+02', 'ann@example.com', 'no'),
	('نیلوفر', 'نیلوفر', false, NULL, NULL, NULL, 'yes'),
	('alice', 'x', NULL, NULL, NULL, NULL, 'perhaps');
`

func TestPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, pgSchema); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	t.Run("transactions timestamptz numeric", func(t *testing.T) {
		t.Parallel()
		s := &memSink{}
		rep, err := (&Postgres{DSN: dsn, Mapping: Mapping{Timestamp: "created_at", MaxRejectedRatio: 1, RejectNegativeAmounts: true},
			TransactionsQuery: `SELECT customer_id, created_at, amount FROM orders ORDER BY id`}).Read(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []Transaction{
			{Row: 1, CustomerID: []byte("c1"), Day: day("2024-02-01"), Amount: 23.5}, // 01:30 UTC
			{Row: 2, CustomerID: []byte("نیلوفر"), Day: day("2024-02-01"), Amount: 7.25},
			{Row: 3, CustomerID: []byte("c1"), Day: day("2024-02-10"), Amount: 10},
		}
		if !reflect.DeepEqual(s.txs, want) {
			t.Errorf("%+v", s.txs)
		}
		wantSamples := []RowError{
			{Row: 4, Input: "transactions", Column: "customer_id", Reason: reasonMissing},
			{Row: 5, Input: "transactions", Column: "created_at", Reason: reasonMissing},
			{Row: 6, Input: "transactions", Column: "amount", Reason: reasonNegative},
			{Row: 7, Input: "transactions", Column: "created_at", Reason: reasonDate},
		}
		if rep.Rows != 7 || rep.Rejected != 4 || !reflect.DeepEqual(rep.Samples, wantSamples) {
			t.Errorf("%+v", rep)
		}
	})

	t.Run("date and text columns, float NaN, time zone", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			query  string
			m      Mapping
			days   []int32
			reason string
		}{
			{`SELECT customer_id, day AS timestamp, amount_f AS amount FROM orders WHERE customer_id IS NOT NULL ORDER BY id`,
				Mapping{MaxRejectedRatio: 1}, []int32{day("2024-01-31"), day("2024-02-01"), day("2024-02-10")}, reasonDecimal},
			{`SELECT customer_id, day_text AS timestamp, amount FROM orders WHERE customer_id IS NOT NULL ORDER BY id`,
				Mapping{DateLayout: "20060102", MaxRejectedRatio: 1}, []int32{day("2024-01-31"), day("2024-02-01"), day("2024-02-10")}, reasonDate},
			{`SELECT customer_id, created_at AS timestamp, amount FROM orders WHERE customer_id IN ('c1') ORDER BY id`,
				Mapping{TimeZone: "America/Sao_Paulo"}, []int32{day("2024-01-31"), day("2024-02-09")}, ""},
		} {
			s := &memSink{}
			rep, err := (&Postgres{DSN: dsn, Mapping: tc.m, TransactionsQuery: tc.query}).Read(ctx, s)
			if err != nil {
				t.Fatalf("%s: %v", tc.query, err)
			}
			var days []int32
			for _, tx := range s.txs {
				days = append(days, tx.Day)
			}
			if !reflect.DeepEqual(days, tc.days) {
				t.Errorf("%s: days %v, want %v (%+v)", tc.query, days, tc.days, rep)
			}
			found := tc.reason == ""
			for _, smp := range rep.Samples {
				found = found || smp.Reason == tc.reason
			}
			if !found {
				t.Errorf("%s: no %q in %+v", tc.query, tc.reason, rep)
			}
		}
	})

	t.Run("customers query", func(t *testing.T) {
		t.Parallel()
		s := &memSink{}
		rep, err := (&Postgres{DSN: dsn,
			CustomersQuery:    `SELECT customer_id, name, vip, score, since, email, optout FROM people ORDER BY customer_id`,
			TransactionsQuery: `SELECT customer_id, created_at AS timestamp, amount FROM orders WHERE id <= 3 ORDER BY id`,
			Mapping: Mapping{MaxRejectedRatio: 1,
				Attributes: []Attribute{{Name: "name"}, {Name: "vip", Type: customer.Bool}, {Name: "score", Type: customer.Number},
					{Name: "since", Type: customer.Timestamp}},
				Contact: ContactColumns{Email: "email", OptOut: "optout"}}}).Read(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []Customer{
			{Row: 2, ID: "c1", Attributes: customer.Attributes{"name": "Ann", "vip": true, "score": 4.5,
				"since": time.Date(2020, 5, 1, 8, 0, 0, 0, time.UTC)}, Contact: customer.Contact{Email: "ann@example.com"}},
			{Row: 3, ID: "نیلوفر", Attributes: customer.Attributes{"name": "نیلوفر", "vip": false}, Contact: customer.Contact{OptOut: true}},
		}
		if !reflect.DeepEqual(s.custs, want) || rep.Rows != 6 || rep.Transactions != 3 || rep.Rejected != 1 ||
			rep.Samples[0] != (RowError{Row: 1, Input: "customers", Column: "optout", Reason: reasonBool}) {
			t.Errorf("%+v\n%+v", rep, s.custs)
		}
	})

	t.Run("summary push-down", func(t *testing.T) {
		t.Parallel()
		q := `SELECT customer_id,
			       count(DISTINCT day) - 1 AS frequency,
			       (max(day) - min(day)) / 7.0 AS recency,
			       (DATE '2024-03-02' - min(day)) / 7.0 AS age,
			       coalesce(avg(day_total) FILTER (WHERE day > first), 0) AS monetary,
			       max(day_total) > 20 AS big
			FROM (SELECT customer_id, created_at::date AS day, sum(amount) AS day_total,
			             min(min(created_at::date)) OVER (PARTITION BY customer_id) AS first
			      FROM orders WHERE customer_id IS NOT NULL AND created_at IS NOT NULL AND amount > 0 AND created_at < 'infinity'
			      GROUP BY customer_id, created_at::date) d
			GROUP BY customer_id ORDER BY customer_id`
		s := &memSink{}
		rep, err := (&Postgres{DSN: dsn, SummaryQuery: q,
			Mapping: Mapping{Attributes: []Attribute{{Name: "big", Type: customer.Bool}}}}).Read(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []Summary{
			{Row: 1, ID: "c1", Frequency: 1, Recency: 9.0 / 7, Age: 30.0 / 7, Monetary: 10, Attributes: customer.Attributes{"big": true}},
			{Row: 2, ID: "نیلوفر", Frequency: 0, Recency: 0, Age: 30.0 / 7, Monetary: 0, Attributes: customer.Attributes{"big": false}},
		}
		if len(s.sums) != 2 || rep.Summaries != 2 {
			t.Fatalf("%+v %+v", rep, s.sums)
		}
		for i := range want {
			g, w := s.sums[i], want[i]
			if g.ID != w.ID || g.Frequency != w.Frequency || math.Abs(g.Recency-w.Recency) > 1e-9 ||
				math.Abs(g.Age-w.Age) > 1e-9 || g.Monetary != w.Monetary || !reflect.DeepEqual(g.Attributes, w.Attributes) {
				t.Errorf("summary %d: %+v, want %+v", i, g, w)
			}
		}
	})

	t.Run("read only", func(t *testing.T) {
		t.Parallel()
		_, err := (&Postgres{DSN: dsn, TransactionsQuery: `WITH x AS (INSERT INTO people (customer_id) VALUES ('mallory') RETURNING customer_id)
			SELECT customer_id, now() AS timestamp, 1 AS amount FROM x`}).Read(ctx, &memSink{})
		if qe := wantErrAs[*QueryError](t, err); qe.Code != "25006" {
			t.Errorf("%v", qe)
		}
	})

	t.Run("statement timeout", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		_, err := (&Postgres{DSN: dsn, StatementTimeout: 200 * time.Millisecond,
			TransactionsQuery: `SELECT 'c1' AS customer_id, now() AS timestamp, 1 AS amount FROM pg_sleep(5)`}).Read(ctx, &memSink{})
		if qe := wantErrAs[*QueryError](t, err); qe.Code != "57014" {
			t.Errorf("%v", qe)
		}
		if time.Since(start) > 4*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
	})

	t.Run("errors name columns, not values", func(t *testing.T) {
		t.Parallel()
		_, err := (&Postgres{DSN: dsn, TransactionsQuery: `SELECT customer_id, created_at AS ts, amount FROM orders`}).Read(ctx, &memSink{})
		if mc := wantErrAs[*MissingColumnError](t, err); mc.Column != "timestamp" || mc.Input != "transactions" {
			t.Errorf("%+v", mc)
		}
		_, err = (&Postgres{DSN: dsn, TransactionsQuery: `SELECT customer_id::int AS "customer_id", now() AS timestamp, 1 AS amount FROM people`}).Read(ctx, &memSink{})
		qe := wantErrAs[*QueryError](t, err)
		if qe.Code != "22P02" || strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "Ann") {
			t.Errorf("%v", err)
		}
		_, err = (&Postgres{DSN: dsn, TransactionsQuery: `SELECT nope FROM orders`}).Read(ctx, &memSink{})
		if err == nil || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("identifier dropped from %v", err)
		}
		_, err = (&Postgres{DSN: "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=1", TransactionsQuery: "SELECT 1"}).Read(ctx, &memSink{})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v", err)
		}
		_, err = (&Postgres{DSN: "host=x password=hunter2 port=notaport", TransactionsQuery: "SELECT 1"}).Read(ctx, &memSink{})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v", err)
		}
		_, err = (&Postgres{DSN: dsn}).Read(ctx, &memSink{})
		if err == nil || !strings.Contains(err.Error(), "query is required") {
			t.Errorf("%v", err)
		}
	})

	t.Run("streams many rows and too many rejected", func(t *testing.T) {
		t.Parallel()
		var n int
		rep, err := (&Postgres{DSN: dsn, TransactionsQuery: `SELECT 'c' || (g % 1000) AS customer_id,
				DATE '2024-01-01' + (g % 365) AS timestamp,
				CASE WHEN g % 50 = 0 THEN NULL ELSE (g % 100) + 0.5 END AS amount
			FROM generate_series(1, 200000) g`}).Read(ctx, SinkFuncs{OnTransaction: func(*Transaction) error { n++; return nil }})
		e := wantErrAs[*TooManyRejectedError](t, err)
		if e.Report != rep || rep.Rows != 200000 || rep.Rejected != 4000 || n != 196000 {
			t.Errorf("%+v, %d", rep, n)
		}
		cctx, cancel := context.WithCancel(ctx)
		n = 0
		_, err = (&Postgres{DSN: dsn, TransactionsQuery: `SELECT 'c' AS customer_id, DATE '2024-01-01' AS timestamp, 1 AS amount
			FROM generate_series(1, 10000000)`}).Read(cctx, SinkFuncs{OnTransaction: func(*Transaction) error {
			if n++; n == 1000 {
				cancel()
			}
			return nil
		}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled read: %v", err)
		}
	})
}
