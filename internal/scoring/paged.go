package scoring

import "unsafe"

// paged is a growable array stored in fixed pages, so growing it never
// copies (or briefly doubles) what it already holds.
type paged[T any] struct {
	pages [][]T
	n     int
}

const (
	pageBits = 16
	pageSize = 1 << pageBits
	pageMask = pageSize - 1
)

// grow makes the length at least n; new elements are zero.
func (p *paged[T]) grow(n int) {
	for len(p.pages)<<pageBits < n {
		p.pages = append(p.pages, make([]T, pageSize))
	}
	if n > p.n {
		p.n = n
	}
}

// at returns element i (i < length).
func (p *paged[T]) at(i int32) *T { return &p.pages[i>>pageBits][i&pageMask] }

// len returns the length.
func (p *paged[T]) len() int { return p.n }

// reset forgets the contents but keeps the pages for reuse (zeroed).
func (p *paged[T]) reset() {
	for _, pg := range p.pages {
		clear(pg)
	}
	p.n = 0
}

// arena stores interned strings in 1 MiB chunks: a string never moves, so
// map keys and id lists can point into it without a per-id allocation.
type arena struct {
	cur []byte
}

func (a *arena) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(a.cur)+len(b) > cap(a.cur) {
		a.cur = make([]byte, 0, max(1<<20, len(b)))
	}
	start := len(a.cur)
	a.cur = append(a.cur, b...)
	return unsafe.String(&a.cur[start], len(b))
}

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (b *bitset) set(i int32) {
	w := int(i >> 6)
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	(*b)[w] |= 1 << (i & 63)
}

func (b bitset) has(i int32) bool {
	w := int(i >> 6)
	return w < len(b) && b[w]&(1<<(i&63)) != 0
}

func (b bitset) unset(i int32) {
	if w := int(i >> 6); w < len(b) {
		b[w] &^= 1 << (i & 63)
	}
}

// unsafeBytes views a string as bytes without copying; the bytes must not
// be modified.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
