package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/postgres"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// TestUnavailable stops the server under an open store (pgtest's Down: a
// fast shutdown, as an operator or a failover does) and starts it again
// (Up, same port and data). While it is down every call's error is
// store.IsUnavailable — a snapshot's COPY cut mid-write, a connection
// killed mid-query, the stale pooled connections, then the refused
// connects — and once it is back the same calls work.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := pgtest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	dsn := pgtest.NewDatabase(t, srv)
	s, err := postgres.Open(ctx, dsn, store.Options{MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Before: a run and a current snapshot, and idle pooled connections:
	// three writers at once hold the pool's three, then leave them idle.
	const source = "ns/shop"
	var open []store.SnapshotWriter
	for _, src := range []string{source, "ns/a", "ns/b"} {
		w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: src})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		var c customer.Scored
		for i := range 100 {
			storetest.Customer(i, &c)
			if err := w.Add(&c); err != nil {
				t.Fatal(err)
			}
		}
		open = append(open, w)
	}
	for _, w := range open {
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"SnapshotGetCurrent": func() error { _, err := s.SnapshotGetCurrent(ctx, source); return err },
		"RunGet":             func() error { _, err := s.RunGet(ctx, "r"); return err },
		"RunTally":           func() error { _, err := s.RunTally(ctx, "r"); return err },
		"Now":                func() error { _, err := s.Now(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("%s before the outage: %v", name, err)
		}
	}

	// A snapshot whose COPY is under way when the server stops.
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var c customer.Scored
	i := 0
	add := func(n int) error {
		for end := i + n; i < end; i++ {
			storetest.Customer(i, &c)
			if err := w.Add(&c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(20000); err != nil { // several flushes: the COPY streams
		t.Fatal(err)
	}
	// A query running when the server stops, on a connection of its own.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sleeping := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, "SELECT pg_sleep(60)"); sleeping <- err }()
	time.Sleep(200 * time.Millisecond) // the query is sent

	if err := srv.Down(); err != nil {
		t.Fatal(err)
	}

	// The query killed mid-way.
	select {
	case err := <-sleeping:
		checkUnavailable(t, "a query killed mid-way (raw pgx)", err)
		if !errors.As(err, new(*pgconn.PgError)) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("a query killed mid-way: %v, want a *pgconn.PgError (57P01) or io.ErrUnexpectedEOF", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the query running when the server stopped did not return within 30 s")
	}

	// The snapshot's COPY cut off: Add fails (once the pipe notices), or
	// Commit does.
	deadline := time.Now().Add(30 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		err = add(5000)
	}
	if err == nil {
		_, err = w.Commit()
	}
	checkUnavailable(t, "a snapshot's COPY cut mid-write", err)
	w.Abort()

	// The pooled connections the server closed, then refused connects:
	// each call three times (a pool of 3 holds at most 3 stale ones).
	for range 3 {
		for name, call := range calls {
			checkUnavailable(t, name, call())
		}
	}
	// A refused connect as pgx returns it: *pgconn.ConnectError unwrapping
	// (through errors.Join and pgx's per-address error) to the dial's
	// *net.OpError and ECONNREFUSED.
	err = calls["RunGet"]()
	if !errors.As(err, new(*pgconn.ConnectError)) || !errors.As(err, new(*net.OpError)) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("RunGet with the server down: %v (%s), want a *pgconn.ConnectError over a refused *net.OpError", err, chain(err))
	}
	// Every other method of the store, as the reconcilers and runners call
	// them: each fails unavailable (or rejects its parameters before
	// connecting).
	for name, err := range storetest.Calls(ctx, s) {
		switch {
		case err == nil:
			t.Errorf("%s with the server down succeeded", name)
		case store.IsUnavailable(err):
		case errors.Is(err, store.ErrInvalid):
			t.Logf("%s with the server down: %v (invalid parameters, checked before connecting)", name, err)
		default:
			t.Errorf("%s with the server down: %v (%s): IsUnavailable is false", name, err, chain(err))
		}
	}
	// A new store cannot open meanwhile.
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if s2, err := postgres.Open(octx, dsn, store.Options{NoMigrate: true}); err == nil {
		s2.Close()
		t.Error("Open succeeded with the server down")
	} else {
		checkUnavailable(t, "Open", err)
	}

	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Errorf("%s after the server came back: %v", name, err)
		}
	}
	// The cut snapshot left nothing; a new one writes.
	cur, err := s.SnapshotGetCurrent(ctx, source)
	if err != nil || cur.Customers != 100 {
		t.Fatalf("current snapshot after the outage = %+v, %v; want the one of 100 customers", cur, err)
	}
	writeSnapshot(t, ctx, s, source, 200)
}

// writeSnapshot writes and commits a snapshot of n customers.
func writeSnapshot(t *testing.T, ctx context.Context, s store.Store, source string, n int) {
	t.Helper()
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var c customer.Scored
	for i := range n {
		storetest.Customer(i, &c)
		if err := w.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkUnavailable fails the test unless err is store.IsUnavailable, and
// logs what the driver returned.
func checkUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s with the server down: no error", what)
	case !store.IsUnavailable(err):
		t.Errorf("%s with the server down: %v (%s): IsUnavailable is false", what, err, chain(err))
	default:
		t.Logf("%s: %v (%s)", what, err, chain(err))
	}
}

// chain lists the types of err's chain, unwrapping errors.Join's too.
func chain(err error) string {
	var parts []string
	var walk func(error)
	walk = func(err error) {
		for err != nil {
			parts = append(parts, fmt.Sprintf("%T", err))
			switch u := err.(type) {
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e)
				}
				return
			case interface{ Unwrap() error }:
				err = u.Unwrap()
			default:
				return
			}
		}
	}
	walk(err)
	return strings.Join(parts, " > ")
}

// TestUnavailableHangUp: a server that accepts the connection and closes
// it without a word (a proxy or load balancer whose backend is gone) is
// unavailable too: pgx reports the connect as io.ErrUnexpectedEOF.
func TestUnavailableHangUp(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 1024))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("postgres://postgres@%s/none?sslmode=disable", l.Addr())
	s, err := postgres.Open(ctx, url, store.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded against a server that hangs up")
	}
	checkUnavailable(t, "Open against a server that hangs up", err)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Open against a server that hangs up: %v (%s), want io.ErrUnexpectedEOF in the chain", err, chain(err))
	}
}
