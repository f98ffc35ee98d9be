package controllers

import (
	"context"
	"fmt"
	"sync"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
)

// StoreProvider opens the data-plane store on first use and keeps it. A
// store that cannot be reached is not fatal to the operator: the
// reconcilers that need it report Ready=False reason=StoreUnavailable and
// retry, and the next call tries to open it again.
type StoreProvider struct {
	URL     string
	Options store.Options

	mu    sync.Mutex
	store store.Store
	// open is store.Open; tests replace it to reach the error path.
	open func(ctx context.Context, url string, opts store.Options) (store.Store, error)
}

// NewStoreProvider returns a provider for a store URL (sqlite:// or postgres://).
func NewStoreProvider(url string, opts store.Options) *StoreProvider {
	return &StoreProvider{URL: url, Options: opts, open: store.Open}
}

// ForStore wraps an already open store.
func ForStore(s store.Store) *StoreProvider { return &StoreProvider{store: s} }

// Get returns the open store, opening it if needed.
func (p *StoreProvider) Get(ctx context.Context) (store.Store, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.store != nil {
		return p.store, nil
	}
	s, err := p.open(ctx, p.URL, p.Options)
	if err != nil {
		return nil, waiting(retentionv1.ReasonStoreUnavailable, "store %s unavailable: %v", store.Redact(p.URL), err)
	}
	p.store = s
	return s, nil
}

// Close closes the store if it was opened.
func (p *StoreProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.store == nil {
		return nil
	}
	err := p.store.Close()
	p.store = nil
	if err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}
