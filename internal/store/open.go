package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// OpenFunc opens a store from a URL. Drivers register one per URL scheme.
type OpenFunc func(ctx context.Context, url string, opts Options) (Store, error)

var (
	driversMu sync.RWMutex
	drivers   = map[string]OpenFunc{}
)

// Register makes a driver available to Open for a URL scheme ("sqlite",
// "postgres"). Drivers call it from init; registering a scheme twice
// panics, as database/sql does.
func Register(scheme string, open OpenFunc) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[scheme]; dup {
		panic("store: Register called twice for scheme " + scheme)
	}
	drivers[scheme] = open
}

// Open opens the store a URL names, picking the driver by scheme, and
// applies its migrations:
//
//	sqlite:///abs/path.db, sqlite://relative/path.db    internal/store/sqlite
//	postgres://user@host:5432/db?sslmode=disable       internal/store/postgres
//	postgresql://…                                     (same)
//
// The driver packages register themselves: the program must import them
// (import _ ".../internal/store/postgres" and ".../internal/store/sqlite").
func Open(ctx context.Context, url string, opts Options) (Store, error) {
	scheme, _, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("store: URL %q has no scheme (want sqlite:// or postgres://): %w", Redact(url), ErrInvalid)
	}
	scheme = strings.ToLower(scheme)
	driversMu.RLock()
	open := drivers[scheme]
	driversMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("store: no driver for scheme %q (registered: %s; is the driver package imported?): %w",
			scheme, strings.Join(Schemes(), ", "), ErrInvalid)
	}
	return open(ctx, url, opts)
}

// Schemes lists the registered URL schemes.
func Schemes() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	s := make([]string, 0, len(drivers))
	for k := range drivers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Redact hides the password of a store URL, for logs and errors:
// postgres://user:secret@host/db becomes postgres://user:xxxxx@host/db.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return url
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
