package store

import "testing"

// TestTombstones: an id is erased when both its fingerprint and its hash
// are among the tombstones; a fingerprint alone (a collision) is not
// enough; no tombstones, nothing erased.
func TestTombstones(t *testing.T) {
	salt := []byte("salt-of-the-test-store-32-bytes!")
	h := TombstoneHash(salt, "c7")
	ts := NewTombstones(salt, 3, [][]byte{h[:]}, []int64{TombstoneFingerprint(salt, "c7"), TombstoneFingerprint(salt, "c8")})
	for id, want := range map[string]bool{"c7": true, "c8": false, "c9": false, "": false} {
		if got := ts.Erased(id); got != want {
			t.Errorf("Erased(%q) = %v, want %v", id, got, want)
		}
		if got := ts.ErasedBytes([]byte(id)); got != want {
			t.Errorf("ErasedBytes(%q) = %v, want %v", id, got, want)
		}
	}
	if ts.Len() != 1 || ts.Through != 3 {
		t.Errorf("Len %d, Through %d", ts.Len(), ts.Through)
	}
	other := TombstoneHash([]byte("another salt"), "c7")
	if other == h || TombstoneFingerprint([]byte("another salt"), "c7") == TombstoneFingerprint(salt, "c7") {
		t.Error("the salt does not change the tombstone")
	}
	var none *Tombstones
	if none.Len() != 0 || NewTombstones(nil, 0, nil, nil).Erased("c7") {
		t.Error("no tombstones erase someone")
	}
}
