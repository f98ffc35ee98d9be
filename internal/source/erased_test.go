package source

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/retention-dev/retention-operator/internal/store"
)

// TestWithoutErased: the erased customer's rows never reach the sink and
// are counted apart; the check is asked once per run of one customer's rows.
func TestWithoutErased(t *testing.T) {
	t.Parallel()
	in := "customer_id,timestamp,amount\n" +
		"c1,2024-01-31,10\n" +
		"c2,2024-02-01,11\n" +
		"c2,2024-02-02,12\n" +
		"c3,2024-02-03,13\n" +
		"c2,2024-02-04,14\n"
	asked := 0
	r := &WithoutErased{
		Reader: &CSV{Transactions: FromBytes([]byte(in)), Customers: FromBytes([]byte("customer_id,email\nc2,two@example.com\nc3,three@example.com\n")),
			Mapping: Mapping{Contact: ContactColumns{Email: "email"}}},
		Erased: func(id []byte) bool { asked++; return bytes.Equal(id, []byte("c2")) },
	}
	s := &memSink{}
	rep, err := r.Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tx := range s.txs {
		got = append(got, fmt.Sprintf("%s:%v", tx.CustomerID, tx.Amount))
	}
	if fmt.Sprint(got) != "[c1:10 c3:13]" || len(s.custs) != 1 || s.custs[0].ID != "c3" {
		t.Errorf("sink got transactions %v, customers %+v", got, s.custs)
	}
	if rep.Rows != 7 || rep.Transactions != 2 || rep.Customers != 1 || rep.Erased != 4 {
		t.Errorf("report %+v: want 7 rows, 2 transactions, 1 customer, 4 erased", rep)
	}
	if asked != 6 { // customers c2, c3; transactions c1, c2 (twice: once per run), c3
		t.Errorf("asked %d times, want 6", asked)
	}
}

// BenchmarkCSVReadWithoutErased is BenchmarkCSVRead through the erasure
// filter with 1,000 tombstones: every row's customer differs from the
// previous one (the input is not grouped), so this is the worst case, one
// tombstone check per row (its fingerprint; no SHA-256, as no row is
// erased).
func BenchmarkCSVReadWithoutErased(b *testing.B) {
	hashes, fingerprints := make([][]byte, 1000), make([]int64, 1000)
	salt := []byte("0123456789abcdef0123456789abcdef")
	for i := range hashes {
		id := fmt.Sprintf("erased-%d", i)
		h := store.TombstoneHash(salt, id)
		hashes[i], fingerprints[i] = h[:], store.TombstoneFingerprint(salt, id)
	}
	ts := store.NewTombstones(salt, 1000, hashes, fingerprints)
	benchRead(b, func(data []byte, s *countSink) (*Report, error) {
		r := &WithoutErased{Reader: &CSV{Transactions: FromBytes(data), Mapping: benchMapping()}, Erased: ts.ErasedBytes}
		return r.Read(context.Background(), s)
	})
}
