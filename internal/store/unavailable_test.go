package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// sqlStateError is a server error as *pgconn.PgError presents it.
type sqlStateError struct{ code string }

func (e *sqlStateError) Error() string    { return "FATAL: server says no (SQLSTATE " + e.code + ")" }
func (e *sqlStateError) SQLState() string { return e.code }

// connectError has the shape of pgx v5's *pgconn.ConnectError: it
// unwraps to errors.Join of one error per address tried, each wrapping
// "dial error: %w" around the dialer's *net.OpError.
type connectError struct{ err error }

func (e *connectError) Error() string {
	return "failed to connect to `user=u database=d`: " + e.err.Error()
}
func (e *connectError) Unwrap() error { return e.err }

type perDialError struct{ err error }

func (e *perDialError) Error() string { return "127.0.0.1:5432 (127.0.0.1): " + e.err.Error() }
func (e *perDialError) Unwrap() error { return e.err }

func TestIsUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	pgxRefused := fmt.Errorf("connect to 127.0.0.1:5432: %w",
		&connectError{errors.Join(&perDialError{fmt.Errorf("dial error: %w", refused)})})
	cancelledDial := &net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ErrUnavailable", ErrUnavailable, true},
		{"ErrUnavailable wrapped", fmt.Errorf("reading: %w", ErrUnavailable), true},
		{"ErrUnavailable beside a cancellation", errors.Join(context.Canceled, ErrUnavailable), true},
		{"refused dial", refused, true},
		{"refused dial wrapped", fmt.Errorf("counting: %w", refused), true},
		{"refused connect as pgx returns it", pgxRefused, true},
		{"reset read", fmt.Errorf("receive message failed: %w", reset), true},
		{"ECONNREFUSED alone", syscall.ECONNREFUSED, true},
		{"ECONNRESET in a SyscallError", fmt.Errorf("x: %w", os.NewSyscallError("read", syscall.ECONNRESET)), true},
		{"EPIPE", fmt.Errorf("write failed: %w", os.NewSyscallError("write", syscall.EPIPE)), true},
		{"unexpected EOF", fmt.Errorf("receive message failed: %w", io.ErrUnexpectedEOF), true},
		{"name lookup failed", &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, true},
		{"57P01 admin shutdown", fmt.Errorf("copy: %w", &sqlStateError{"57P01"}), true},
		{"57P02 crash shutdown", &sqlStateError{"57P02"}, true},
		{"57P03 cannot connect now", &sqlStateError{"57P03"}, true},
		{"53300 too many connections", &sqlStateError{"53300"}, true},
		{"08006 connection failure", &sqlStateError{"08006"}, true},
		{"08001 cannot establish", &sqlStateError{"08001"}, true},
		{"08P01 protocol violation", &sqlStateError{"08P01"}, true},
		{"23505 unique violation", fmt.Errorf("insert: %w", &sqlStateError{"23505"}), false},
		{"42P01 undefined table", &sqlStateError{"42P01"}, false},
		{"57014 query canceled", &sqlStateError{"57014"}, false},
		{"40001 serialization failure", &sqlStateError{"40001"}, false},
		{"53100 disk full", &sqlStateError{"53100"}, false},
		{"context canceled", fmt.Errorf("query: %w", context.Canceled), false},
		{"deadline exceeded", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"dial cancelled by the caller", fmt.Errorf("dial error: %w", cancelledDial), false},
		{"HTTP request refused (Kubernetes API)", fmt.Errorf("reading campaign: %w",
			&url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis", Err: refused}), false},
		{"ErrNotFound", fmt.Errorf("run x: %w", ErrNotFound), false},
		{"ErrConflict", ErrConflict, false},
		{"ErrInvalid", ErrInvalid, false},
		{"ErrClosed", ErrClosed, false},
		{"ErrSchema", ErrSchema, false},
		{"plain error", errors.New("connection refused"), false},
		{"io.EOF", io.EOF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsUnavailable(tc.err); got != tc.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
