package campaign

import (
	"crypto/sha256"
	"encoding/binary"
)

// Buckets is the number of holdout buckets: a customer's bucket is in
// [0, Buckets), so a holdout share is expressed in hundredths of a
// percent.
const Buckets = 10000

// Bucket returns the holdout bucket of a customer in a campaign, in
// [0, Buckets):
//
//	Bucket = uint64_be(SHA-256("holdout" 0x00 campaignUID 0x00 customerID)[0:8]) mod 10000
//
// that is, the first eight bytes of the SHA-256 digest of the UTF-8 bytes
// of "holdout", a zero byte, the campaign UID, a zero byte and the
// customer id, read as a big-endian unsigned integer, modulo 10,000. (The
// modulo bias, 2^64 mod 10^4 over 2^64, is below 10^-15.)
//
// This function must never change: it decides which customers are held
// out, and the groups of a campaign must stay the same across runs and
// operator versions (recorded assignments cover the customers already
// seen, but not the ones a later run meets for the first time). It is
// plain SHA-256 so that it can be reproduced outside Go, e.g. in SQL
// (PostgreSQL: ('x' || left(encode(sha256(...), 'hex'), 16))::bit(64)).
func Bucket(campaignUID, customerID string) int32 {
	return int32(hash64("holdout", campaignUID, customerID) % Buckets)
}

// Threshold turns a holdout percentage into a bucket threshold: a
// customer is held out when Bucket < Threshold(percent). It is percent ×
// 100, with percent clamped to [0, 100]. Because buckets do not depend on
// the percentage, raising it (10 to 20) keeps every customer held out
// before in the holdout, and lowering it only releases customers.
func Threshold(percent int32) int32 {
	switch {
	case percent < 0:
		return 0
	case percent > 100:
		return Buckets
	}
	return percent * 100
}

// InHoldout reports whether a customer's bucket falls below the threshold.
func InHoldout(campaignUID, customerID string, threshold int32) bool {
	return Bucket(campaignUID, customerID) < threshold
}

// hash64 is the first eight bytes, big-endian, of the SHA-256 digest of
// domain, campaign and customer joined by zero bytes. The domain keeps the
// holdout, variant and shard hashes independent of each other.
func hash64(domain, a, b string) uint64 {
	buf := make([]byte, 0, len(domain)+len(a)+len(b)+2)
	buf = append(buf, domain...)
	buf = append(buf, 0)
	buf = append(buf, a...)
	buf = append(buf, 0)
	buf = append(buf, b...)
	sum := sha256.Sum256(buf)
	return binary.BigEndian.Uint64(sum[:8])
}
