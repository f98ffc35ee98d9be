package scoring

import (
	"math/bits"
	"unsafe"
)

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

// idArena stores customer ids in 1 MiB chunks, addressed by a packed
// reference per customer: no pointer per id for the garbage collector to
// trace, and a string never moves once written.
type idArena struct {
	chunks [][]byte
	refs   paged[uint64] // chunk<<44 | offset<<20 | length
}

// maxIDLen bounds a customer id (the reference keeps 20 bits of length).
const maxIDLen = 1<<20 - 1

// add stores the id of customer idx (refs must have room for idx).
func (a *idArena) add(idx int32, b []byte) {
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+len(b) > cap(a.chunks[n-1]) {
		a.chunks = append(a.chunks, make([]byte, 0, max(1<<20, len(b))))
		n++
	}
	c := &a.chunks[n-1]
	off := len(*c)
	*c = append(*c, b...)
	*a.refs.at(idx) = uint64(n-1)<<44 | uint64(off)<<20 | uint64(len(b))
}

// get returns the id bytes of customer idx (not to be modified).
func (a *idArena) get(idx int32) []byte {
	r := *a.refs.at(idx)
	off := int(r>>20) & (1<<24 - 1)
	return a.chunks[r>>44][off : off+int(r&(1<<20-1))]
}

// str returns the id of customer idx as a string sharing the arena's bytes.
func (a *idArena) str(idx int32) string {
	b := a.get(idx)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// hashID is a 64-bit hash of an id (wyhash-style multiply-mix), fixed so
// that shard assignment and emission order do not change between runs.
func hashID[T string | []byte](b T) uint64 {
	const m1, m2, m3 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3
	h := uint64(len(b))*m1 ^ m3
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
			uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
		h = mix64(h^v, m2)
	}
	if i < len(b) {
		var v uint64
		for k := 0; i < len(b); i, k = i+1, k+8 {
			v |= uint64(b[i]) << k
		}
		h = mix64(h^v, m3)
	}
	return mix64(h, m1)
}

func mix64(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// shardOfHash maps a hash onto one of n shards, by its low 32 bits (the
// high ones place the customer within the shard's index).
func shardOfHash(h uint64, n int) int { return int(uint64(uint32(h)) * uint64(n) >> 32) }

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
