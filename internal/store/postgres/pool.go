package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
)

// pool is a small connection pool over pgx.Conn.
//
// pgx's own pool (pgxpool) needs github.com/jackc/puddle/v2, which the
// module does not require yet; this pool covers what the store needs:
// bounded connections, lazy connect, idle reuse, broken connections
// discarded. Swapping in pgxpool later changes only this file.
type pool struct {
	cfg  *pgx.ConnConfig
	sem  chan struct{} // one token per connection in use
	pair chan struct{} // held while taking two connections at once

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
}

func newPool(cfg *pgx.ConnConfig, max int) *pool {
	return &pool{cfg: cfg, sem: make(chan struct{}, max), pair: make(chan struct{}, 1)}
}

// acquirePair returns two connections for one operation (a write
// transaction and a concurrent read). Callers that take two connections
// take them one pair at a time, so two of them never deadlock each holding
// one; callers that take one never wait while holding one. With a pool of
// one connection the second is a connection of its own outside the pool:
// release it with releasePair.
func (p *pool) acquirePair(ctx context.Context) (*pgx.Conn, *pgx.Conn, error) {
	select {
	case p.pair <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("acquire connections: %w", ctx.Err())
	}
	defer func() { <-p.pair }()
	a, err := p.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cap(p.sem) < 2 {
		b, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			p.release(a)
			return nil, nil, fmt.Errorf("connect to %s:%d: %w", p.cfg.Host, p.cfg.Port, err)
		}
		return a, b, nil
	}
	b, err := p.acquire(ctx)
	if err != nil {
		p.release(a)
		return nil, nil, err
	}
	return a, b, nil
}

// releasePair releases the connections of acquirePair.
func (p *pool) releasePair(a, b *pgx.Conn) {
	p.release(a)
	if cap(p.sem) < 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
		return
	}
	p.release(b)
}

// acquire returns a connection, waiting for a free slot. The caller must
// release it.
func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("acquire connection: %w", ctx.Err())
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, store.ErrClosed
	}
	var c *pgx.Conn
	for len(p.idle) > 0 && c == nil {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.IsClosed() {
			c = nil
		}
	}
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.sem
		return nil, fmt.Errorf("connect to %s:%d: %w", p.cfg.Host, p.cfg.Port, err)
	}
	return c, nil
}

// release returns a connection to the pool, or closes it when it is broken,
// busy or left inside a transaction.
func (p *pool) release(c *pgx.Conn) {
	defer func() { <-p.sem }()
	ok := !c.IsClosed() && !c.PgConn().IsBusy() && c.PgConn().TxStatus() == 'I'
	p.mu.Lock()
	if ok && !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// close closes idle connections; connections in use close on release.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range idle {
		_ = c.Close(ctx)
	}
}
