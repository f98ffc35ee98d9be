package store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
)

// IsUnavailable reports whether err says the store's database cannot be
// reached: a condition to wait out (the request may well succeed when the
// database is back), not a fault of the request. It is true when err is or
// wraps ErrUnavailable, or when its chain shows the database connection
// failing, as the drivers return it (unwrapped through %w, errors.Join and
// the drivers' own error types):
//
//   - a network error (net.Error, *net.OpError: a refused or reset
//     connection, an unreachable host, a failed name lookup) — pgx returns
//     a refused connect as *pgconn.ConnectError, which unwraps to the
//     dial's *net.OpError (syscall.ECONNREFUSED);
//   - syscall.ECONNREFUSED, ECONNRESET, ECONNABORTED, EPIPE, EHOSTUNREACH,
//     ENETUNREACH or ETIMEDOUT, also outside a net.OpError;
//   - io.ErrUnexpectedEOF: the connection closed mid-message (pgx reports a
//     server that went away without a word so);
//   - a server error with an SQLSTATE (anything in the chain with a
//     SQLState() string method, as *pgconn.PgError has) of class 08
//     (connection exception), 57P01 admin_shutdown (the server is
//     stopping: it terminates every session), 57P02 crash_shutdown, 57P03
//     cannot_connect_now (starting up or shutting down) or 53300
//     too_many_connections.
//
// It is false for nil; for context.Canceled and context.DeadlineExceeded
// (the caller gave up, whatever the connection was doing: pgx reports a
// cancelled or timed-out call so, and a connect_timeout too); for the
// error of an HTTP request (*url.Error: the Kubernetes API's client, not
// the store, whose errors never hold one); and for every other error,
// among them ErrNotFound, ErrConflict, ErrInvalid, ErrClosed, ErrSchema
// and SQL errors such as 23505 unique_violation. ErrUnavailable wins over
// all of these.
//
// No driver package is imported: the classification reads the standard
// library's error types and the SQLState method only.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return false
	}
	var se interface{ SQLState() string }
	if errors.As(err, &se) && unavailableState(se.SQLState()) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	for _, errno := range unavailableErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// unavailableErrnos are the system errors of a connection that failed.
var unavailableErrnos = []error{
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
	syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT,
}

// unavailableState reports whether an SQLSTATE says the server cannot
// serve the connection: class 08, 57P01-57P03, 53300.
func unavailableState(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}
	return len(code) == 5 && strings.HasPrefix(code, "08")
}
