// Package pgtest starts real PostgreSQL servers for tests.
//
// It runs Debian's server binaries (/usr/lib/postgresql/<version>/bin, or
// initdb and pg_ctl on $PATH) on a random loopback port with a data
// directory in a temporary folder and test-speed settings (fsync off, no
// synchronous commit). initdb and postgres refuse to run as root, so when
// the test runs as root (CI, containers) they run as the "postgres" user
// through runuser. Nothing is skipped: when the binaries are missing the
// test fails and says how to install them (`make tools`).
//
// One server for one test:
//
//	dsn := pgtest.Start(t)
//
// One server for a whole package, a fresh database per test:
//
//	var server *pgtest.Server
//
//	func TestMain(m *testing.M) { pgtest.Main(m, &server) }
//
//	func TestX(t *testing.T) {
//		dsn := pgtest.NewDatabase(t, server)
//		…
//	}
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// installHint is appended to every error about missing binaries.
const installHint = "install them with `make tools` (hack/tools.sh debian installs Debian's postgresql package)"

// Superuser is the bootstrap superuser of every server this package starts.
const Superuser = "postgres"

// DefaultSettings are the server settings for tests: durability traded for
// speed. Config.Settings overrides or extends them.
var DefaultSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "200",
	"shared_buffers":     "128MB",
	"max_wal_size":       "2GB",
	"log_min_messages":   "warning",
	"timezone":           "UTC",
}

// Config changes how a server is started. The zero value is the test
// default.
type Config struct {
	// Settings are passed to postgres as -c name=value and override
	// DefaultSettings; an empty value removes a default (the server's own
	// default applies).
	Settings map[string]string
}

// Server is one running PostgreSQL server. It is safe for concurrent use.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Version is the server's major version ("15").
	Version string

	dir     string // temporary folder: data/, socket, log
	bin     string // directory holding initdb, pg_ctl, postgres
	asUser  string // "postgres" when running as root, else ""
	opts    string // the server's -c settings, port included, for Up
	dbCount atomic.Int64
	stopped atomic.Bool
	down    atomic.Bool // Down and not Up again
}

// Start starts a server for one test and returns the DSN of a fresh
// database on it. The server is stopped and its files removed when the
// test ends. It fails the test (never skips) when the server cannot start.
func Start(t testing.TB) string {
	t.Helper()
	s, err := NewServer(nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return NewDatabase(t, s)
}

// Main starts one server for a test binary, stores it in *server, runs the
// tests and stops the server, then exits with the tests' status. Call it
// from TestMain. If the server cannot start it prints why and exits 1.
func Main(m *testing.M, server **Server) {
	s, err := NewServer(nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		os.Exit(1)
	}
	*server = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// NewDatabase creates a fresh, empty database on s for one test and returns
// its DSN. The database is dropped when the test ends.
func NewDatabase(t testing.TB, s *Server) string {
	t.Helper()
	if s == nil {
		t.Fatal("pgtest: NewDatabase: nil server (is TestMain calling pgtest.Main?)")
	}
	name := fmt.Sprintf("t%d_%s", s.dbCount.Add(1), sanitize(t.Name()))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if s.stopped.Load() || s.down.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// DSN returns the URL of database db on s (trust authentication as the
// superuser, no TLS).
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name on s.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	if err := s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Dir is the server's temporary folder (data directory in data/, log in
// postgres.log).
func (s *Server) Dir() string { return s.dir }

func (s *Server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewServer starts a server. The caller must Stop it.
func NewServer(cfg *Config) (*Server, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	bin, version, err := findBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, Version: version}
	if os.Geteuid() == 0 {
		s.asUser = "postgres"
	}
	reapOrphans()

	s.dir, err = os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Server, error) {
		_ = os.RemoveAll(s.dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(err)
	}
	if s.asUser != "" {
		u, err := user.Lookup(s.asUser)
		if err != nil {
			return fail(fmt.Errorf("running as root, so the server must run as user %q: %w (%s)", s.asUser, err, installHint))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return fail(err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return fail(fmt.Errorf("running as root needs runuser (util-linux) to start PostgreSQL as %q: %w", s.asUser, err))
		}
	}

	data := filepath.Join(s.dir, "data")
	out, err := s.run(2*time.Minute, "initdb", "-D", data, "-U", Superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}

	settings := map[string]string{}
	for k, v := range DefaultSettings {
		settings[k] = v
	}
	for k, v := range cfg.Settings {
		settings[k] = v
	}
	// A free port can be taken between the probe and the server's bind:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		settings["port"] = strconv.Itoa(port)
		settings["listen_addresses"] = "127.0.0.1"
		settings["unix_socket_directories"] = s.dir
		keys := make([]string, 0, len(settings))
		for k, v := range settings {
			if v != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var opts []string
		for _, k := range keys {
			opts = append(opts, "-c "+k+"="+quoteOpt(settings[k]))
		}
		s.opts = strings.Join(opts, " ")
		out, err := s.start()
		if err == nil {
			s.Port = port
			return s, nil
		}
		log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
		lastErr = fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail(log, 2000))
		if !bytes.Contains(log, []byte("could not bind")) && !bytes.Contains(log, []byte("Address already in use")) {
			break
		}
		_ = os.Truncate(filepath.Join(s.dir, "postgres.log"), 0)
	}
	return fail(lastErr)
}

// start runs pg_ctl start on the data directory with the server's settings
// and waits until it accepts connections.
func (s *Server) start() ([]byte, error) {
	return s.run(2*time.Minute, "pg_ctl", "start", "-w", "-t", "90", "-D", filepath.Join(s.dir, "data"),
		"-l", filepath.Join(s.dir, "postgres.log"), "-o", s.opts)
}

// Stop stops the server immediately (no checkpoint) and removes its files.
// Stopping twice, or a server that is Down, is fine.
func (s *Server) Stop() error {
	if s.stopped.Swap(true) {
		return nil
	}
	var out []byte
	var err error
	if !s.down.Load() {
		out, err = s.run(time.Minute, "pg_ctl", "stop", "-m", "immediate", "-w", "-D", filepath.Join(s.dir, "data"))
	}
	rmErr := os.RemoveAll(s.dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return rmErr
}

// Down stops the server as an administrator's stop or a failover would
// (fast shutdown: every connection is cut, open transactions are rolled
// back, committed ones are kept) but keeps its data directory and port, so
// that Up brings the same databases back at the same DSNs: an outage of the
// database, for tests of the clients that must ride it out. (Not an
// immediate shutdown: with DefaultSettings' synchronous_commit=off a crash
// loses the last commits, which a production server would not.)
func (s *Server) Down() error {
	if s.stopped.Load() {
		return errors.New("pgtest: Down: the server was stopped")
	}
	if s.down.Swap(true) {
		return nil
	}
	if out, err := s.run(time.Minute, "pg_ctl", "stop", "-m", "fast", "-w", "-D", filepath.Join(s.dir, "data")); err != nil {
		return fmt.Errorf("pgtest: Down: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Up starts a server that is Down again, on the same port with the same
// settings, and returns once it accepts connections (after crash
// recovery).
func (s *Server) Up() error {
	if s.stopped.Load() {
		return errors.New("pgtest: Up: the server was stopped")
	}
	if !s.down.Load() {
		return nil
	}
	if out, err := s.start(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
		return fmt.Errorf("pgtest: Up: pg_ctl start on port %d: %w\n%s\n%s", s.Port, err, out, tail(log, 2000))
	}
	s.down.Store(false)
	return nil
}

// run runs one of the server's binaries, as the postgres user when the
// process is root.
func (s *Server) run(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = s.dir
	// pg_ctl leaves the server running in its own session; it must not
	// inherit the test's stdout (go test would wait for it to close).
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	return cmd.CombinedOutput()
}

var versionDir = regexp.MustCompile(`/postgresql/([0-9]+)/bin$`)

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// the newest /usr/lib/postgresql/<version>/bin, else $PATH.
func findBinaries() (dir, version string, err error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool {
		a, _ := strconv.Atoi(versionOf(matches[i]))
		b, _ := strconv.Atoi(versionOf(matches[j]))
		return a > b
	})
	for _, m := range matches {
		if hasServer(m) {
			return m, versionOf(m), nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p), "", nil
	}
	return "", "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or $PATH; %s", installHint)
}

func versionOf(dir string) string {
	if m := versionDir.FindStringSubmatch(dir); m != nil {
		return m[1]
	}
	return ""
}

func hasServer(dir string) bool {
	for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// reapOrphans stops servers left behind by test processes that died
// without cleaning up (a killed `go test`), found by the owner.pid file in
// their folder.
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		pidFile := filepath.Join(d, "data", "postmaster.pid")
		if pb, err := os.ReadFile(pidFile); err == nil {
			if line, _, _ := strings.Cut(string(pb), "\n"); line != "" {
				if ppid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && processAlive(ppid) {
					_ = syscall.Kill(ppid, syscall.SIGQUIT) // immediate shutdown
					for i := 0; i < 50 && processAlive(ppid); i++ {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
		}
		_ = os.RemoveAll(d)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(name string) string {
	return strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(name), "_"), "_")
}

// quoteOpt quotes a value for pg_ctl -o (which passes it through a shell).
func quoteOpt(v string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./:-]+$`).MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Dump returns every row of every table of the database at url (its
// current schema), by table, each row's values made text by rowText: a
// test searches the whole database for what must not be there (an erased
// customer).
func Dump(t testing.TB, url string, rowText func([]any) string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := conn.Query(ctx, "SELECT * FROM "+pgx.Identifier{table}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], rowText(vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
