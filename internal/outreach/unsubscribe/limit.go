package unsubscribe

import (
	"container/list"
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of HandlerConfig's rate limits.
const (
	// DefaultRateLimit and DefaultBurst bound recorded opt-outs (store
	// writes) over all clients. Real opt-outs come a few a minute even
	// after a large campaign; 50 a second leaves room for a burst of
	// clicks and keeps a replayed link from hammering the store.
	DefaultRateLimit = 50
	DefaultBurst     = 100
	// DefaultClientBurst is the burst of a client's bucket when
	// ClientRateLimit is set and ClientBurst is not: a person needs two
	// requests (the GET page and its button's POST).
	DefaultClientBurst = 10
	// DefaultMaxClients bounds the per-client buckets kept (about 200
	// bytes each), so a flood from many addresses cannot grow memory.
	DefaultMaxClients = 10_000
)

// Scopes passed to HandlerConfig.OnRateLimited.
const (
	// ScopeGlobal: the opt-outs of all clients were over RateLimit.
	ScopeGlobal = "global"
	// ScopeClient: one client's requests were over ClientRateLimit.
	ScopeClient = "client"
)

// unknownClient is the bucket of requests whose address does not parse;
// they share it rather than each getting a fresh one.
const unknownClient = "unknown"

// limits holds the handler's token buckets. Every check reads now, not
// the wall clock, so tests drive time without sleeping.
type limits struct {
	now    func() time.Time
	writes *rate.Limiter
	// clients is nil when there is no per-client limit.
	clients    *clientBuckets
	clientAddr func(*http.Request) string
}

// newLimits applies the defaults to cfg's limits; it errs on negative
// ones, which are configuration mistakes.
func newLimits(cfg HandlerConfig, now func() time.Time) (*limits, error) {
	if cfg.RateLimit < 0 || cfg.Burst < 0 || cfg.ClientRateLimit < 0 || cfg.ClientBurst < 0 || cfg.MaxClients < 0 {
		return nil, errors.New("unsubscribe: HandlerConfig rate limits must not be negative")
	}
	l := &limits{
		now:        now,
		writes:     rate.NewLimiter(rate.Limit(orDefault(cfg.RateLimit, DefaultRateLimit)), orDefault(cfg.Burst, DefaultBurst)),
		clientAddr: cfg.ClientAddr,
	}
	if l.clientAddr == nil {
		l.clientAddr = remoteHost
	}
	if cfg.ClientRateLimit > 0 {
		l.clients = newClientBuckets(rate.Limit(cfg.ClientRateLimit),
			orDefault(cfg.ClientBurst, DefaultClientBurst), orDefault(cfg.MaxClients, DefaultMaxClients))
	}
	return l, nil
}

func orDefault[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// allowWrite takes a token for one store write, or says how long until
// there is one.
func (l *limits) allowWrite() (time.Duration, bool) {
	return take(l.writes, l.now())
}

// allowClient takes a token from r's client bucket; always true without a
// per-client limit.
func (l *limits) allowClient(r *http.Request) (time.Duration, bool) {
	if l.clients == nil {
		return 0, true
	}
	return take(l.clients.get(clientKey(l.clientAddr(r))), l.now())
}

// take takes one token from lim at now, or returns the time until one is
// there (for Retry-After) without taking any.
func take(lim *rate.Limiter, now time.Time) (time.Duration, bool) {
	if lim.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - lim.TokensAt(now)
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second)), false
}

// retryAfter is the Retry-After value for a wait: whole seconds, rounded
// up, at least 1 (0 would invite an immediate retry into the same limit).
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// remoteHost is the address of the connection's peer.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientKey names a client's bucket: its IPv4 address, or its IPv6 /64,
// since one host commonly holds a whole /64 and could otherwise take a
// fresh bucket per request. The key is never logged.
func clientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return unknownClient
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return unknownClient
	}
	return p.String()
}

// clientBuckets keeps the buckets of the most recently seen clients, at
// most max of them: the keys come from the network, so an unbounded map
// would let a flood from many addresses grow memory. Evicting a bucket
// forgets that client's debt; the global bucket still protects the store.
type clientBuckets struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	// order holds *clientBucket, most recently used first.
	order *list.List
	byKey map[string]*list.Element
}

type clientBucket struct {
	key string
	lim *rate.Limiter
}

func newClientBuckets(limit rate.Limit, burst, maxClients int) *clientBuckets {
	return &clientBuckets{limit: limit, burst: burst, max: maxClients, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns key's bucket, making it (and evicting the least recently
// used one, if full) when it is new.
func (c *clientBuckets) get(key string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*clientBucket).lim
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*clientBucket).key)
	}
	b := &clientBucket{key: key, lim: rate.NewLimiter(c.limit, c.burst)}
	c.byKey[key] = c.order.PushFront(b)
	return b.lim
}

// len is the number of buckets kept.
func (c *clientBuckets) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
