package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"strings"
)

// ErasureStore forgets customers on request (GDPR Art. 17).
//
// An erasure removes a source's customers from every snapshot of the
// source, every segment membership computed from them, every target of
// the source's runs and ledger entry, ghost contact, holdout assignment
// and opt-out: what is kept is aggregate (campaign tallies and strata,
// segment sizes) and, so that a run's measured figures do not change, its
// targets' group, state, conversion and revenue under a random tombstone
// id that links to nothing. Each erased customer leaves a tombstone: the
// SHA-256 of the store's salt and the customer id, which later snapshots
// of the source are checked against, so a re-import does not bring the
// customer back. Customer ids are per source: another source's customer
// with the same id is untouched, but for opt-outs, which are per channel
// and carry no source: every opt-out of an erased id is removed.
type ErasureStore interface {
	// ErasureApply erases customers of a source in one transaction (see
	// ErasureStore) and records their tombstones. Erasing a customer the
	// store does not know, or one already erased, is not an error: the
	// tombstone is recorded all the same (the customer may arrive with a
	// later import). Pending and claimed targets of the erased become
	// skipped with ReasonErased before their ids are replaced. The
	// segments that lost members get a new membership version, so an
	// incremental apply computed before the erasure gets ErrBaseMoved.
	ErasureApply(ctx context.Context, params *ErasureApplyParams) (*ErasureResult, error)
	// TombstonesGet returns a source's tombstones, to leave the erased
	// out of a new snapshot (Tombstones.Erased), and the newest one's
	// sequence number to pass as SnapshotWriteParams.ErasedThrough.
	TombstonesGet(ctx context.Context, source string) (*Tombstones, error)
	// ErasedFilter returns which of the customers of a source were erased
	// (a runner re-checks its claimed targets before sending).
	ErasedFilter(ctx context.Context, source string, customerIDs []string) (map[string]bool, error)
}

// ReasonErased is the skip reason of the pending and claimed targets of an
// erased customer.
const ReasonErased = "erased"

// MaxErasureIDs bounds the customers of one ErasureApply: they travel as
// one statement parameter and are erased in one transaction.
const MaxErasureIDs = 100_000

// ErasureApplyParams name the customers to erase.
type ErasureApplyParams struct {
	// Source is the key of the customer source, "namespace/name".
	Source string
	// CustomerIDs are the source's customer ids (at least one).
	CustomerIDs []string
}

// Validate checks the parameters.
func (p *ErasureApplyParams) Validate() error {
	if err := CheckKey("source", p.Source); err != nil {
		return err
	}
	if len(p.CustomerIDs) == 0 || len(p.CustomerIDs) > MaxErasureIDs {
		return fmt.Errorf("erasure of %s: %d customer ids, want 1 to %d: %w", p.Source, len(p.CustomerIDs), MaxErasureIDs, ErrInvalid)
	}
	for i, id := range p.CustomerIDs {
		if id == "" {
			// The position, never a neighbouring id: ids are personal.
			return fmt.Errorf("erasure of %s: customer id %d is empty: %w", p.Source, i+1, ErrInvalid)
		}
	}
	return nil
}

// ParseCustomerIDs reads the customer ids of an erasure's Secret
// (CustomerIDLines, repeats dropped) and checks their number. Its errors
// never quote a line.
func ParseCustomerIDs(data []byte) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	for _, id := range CustomerIDLines(data) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	switch {
	case len(ids) == 0:
		return nil, errors.New("no customer id (want one per line)")
	case len(ids) > MaxErasureIDs:
		return nil, fmt.Errorf("%d customer ids, more than the %d of one erasure: split them across several", len(ids), MaxErasureIDs)
	}
	return ids, nil
}

// CustomerIDLines splits a list of customer ids, one per line, with
// surrounding blanks trimmed and blank lines ignored.
func CustomerIDLines(data []byte) []string {
	var ids []string
	for _, line := range strings.Split(string(data), "\n") {
		if id := strings.TrimSpace(line); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// ErasureResult counts what an erasure removed. It holds no id.
type ErasureResult struct {
	// Tombstones counts the tombstones recorded; AlreadyErased the ids
	// that had one (the same id twice in one request counts once).
	Tombstones, AlreadyErased int64
	// SnapshotRows counts the customer records removed from the source's
	// snapshots (one per snapshot that held the customer).
	SnapshotRows int64
	// Memberships counts the segment memberships removed; Segments the
	// segments that lost members.
	Memberships, Segments int64
	// Targets counts the targets whose customer id was replaced by a
	// tombstone id; SkippedTargets those of them that were pending or
	// claimed and are now skipped.
	Targets, SkippedTargets int64
	// Records counts the ledger entries, ghost contacts and holdout
	// assignments removed from the records that outlive runs.
	Records int64
	// OptOuts counts the opt-outs removed.
	OptOuts int64
}

// Tombstones are a source's erased customers, as salted hashes.
type Tombstones struct {
	// Salt is the store's erasure salt (nil before the first erasure).
	Salt []byte
	// Through is the sequence number of the newest tombstone (0: none).
	Through int64
	hashes  map[[sha256.Size]byte]struct{}
	// fingerprints are the tombstones' TombstoneFingerprint values: a
	// source read checks every row against them and hashes an id with
	// SHA-256 only on a match (a SHA-256 per row would cost a scoring of
	// 8 M rows a second).
	fingerprints map[int64]struct{}
	seed         uint64 // FNV-1a state after the salt
}

// NewTombstones returns tombstones of the given hashes and fingerprints
// (of the same customers, in any order).
func NewTombstones(salt []byte, through int64, hashes [][]byte, fingerprints []int64) *Tombstones {
	t := &Tombstones{Salt: salt, Through: through, hashes: make(map[[sha256.Size]byte]struct{}, len(hashes)),
		fingerprints: make(map[int64]struct{}, len(fingerprints)), seed: fnvSeed(salt)}
	for _, h := range hashes {
		var k [sha256.Size]byte
		copy(k[:], h)
		t.hashes[k] = struct{}{}
	}
	for _, f := range fingerprints {
		t.fingerprints[f] = struct{}{}
	}
	return t
}

// Len is the number of tombstones.
func (t *Tombstones) Len() int {
	if t == nil {
		return 0
	}
	return len(t.hashes)
}

// Erased reports whether the customer id has a tombstone. It costs an
// FNV-1a of the id when there are tombstones (nothing otherwise), and a
// SHA-256 when the fingerprint matches one.
func (t *Tombstones) Erased(customerID string) bool { return erased(t, customerID) }

// ErasedBytes is Erased for an id in bytes (a source reader's buffer).
func (t *Tombstones) ErasedBytes(customerID []byte) bool { return erased(t, customerID) }

func erased[ID string | []byte](t *Tombstones, customerID ID) bool {
	if t.Len() == 0 {
		return false
	}
	if _, ok := t.fingerprints[fnvOf(t.seed, customerID)]; !ok {
		return false
	}
	_, ok := t.hashes[tombstoneHash(t.Salt, customerID)]
	return ok
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvSeed(salt []byte) uint64 {
	h := uint64(fnvOffset)
	for _, b := range salt {
		h = (h ^ uint64(b)) * fnvPrime
	}
	return h
}

func fnvOf[ID string | []byte](seed uint64, customerID ID) int64 {
	h := seed
	for i := 0; i < len(customerID); i++ {
		h = (h ^ uint64(customerID[i])) * fnvPrime
	}
	return int64(h)
}

// TombstoneFingerprint is the fast check of a tombstone: FNV-1a (64 bits)
// of the salt followed by the id. It is stored beside the SHA-256, which
// decides; it says no more of the id than the hash does (both are keyed
// by the same salt).
func TombstoneFingerprint(salt []byte, customerID string) int64 {
	return fnvOf(fnvSeed(salt), customerID)
}

// TombstoneHash is the tombstone of a customer id: SHA-256 of the salt
// followed by the id's bytes.
func TombstoneHash(salt []byte, customerID string) [sha256.Size]byte {
	return tombstoneHash(salt, customerID)
}

func tombstoneHash[ID string | []byte](salt []byte, customerID ID) [sha256.Size]byte {
	var buf [256]byte
	b := append(append(buf[:0], salt...), customerID...)
	return sha256.Sum256(b)
}

// WithoutErased leaves the tombstoned customers out of ids: a membership
// apply computed before an erasure committed cannot bring them back.
func WithoutErased(ids iter.Seq2[string, error], t *Tombstones) iter.Seq2[string, error] {
	if t.Len() == 0 || ids == nil {
		return ids
	}
	return func(yield func(string, error) bool) {
		for id, err := range ids {
			if err == nil && t.Erased(id) {
				continue
			}
			if !yield(id, err) {
				return
			}
		}
	}
}
