package campaign

import (
	"hash/fnv"
	"math"
)

// Variant is a message variant's name and weight, as PickVariant needs it.
type Variant struct {
	// Name identifies the variant; names are unique within a campaign.
	Name string
	// Weight is the variant's share relative to the others; 0 (or less)
	// pauses it: no customer is given it.
	Weight int32
}

// PickVariant chooses a customer's variant, deterministically: the same
// campaign, customer and variants always give the same variant, and the
// shares converge to the weights.
//
// It uses weighted rendezvous hashing: each variant i draws
// u_i = h(campaign, customer, name_i) in (0, 1), and the variant with the
// highest score -w_i / ln(u_i) wins, which happens with probability
// w_i / Σw. The draw depends on the variant's name, not on its position,
// so reordering variants changes nothing, and pausing or re-weighting one
// variant moves only the customers who must move (those of a paused
// variant go to the others; the rest keep theirs). The hash is separate
// from the holdout's (another domain), so the variant split is
// independent of the holdout split.
//
// It returns "" when there are no variants or none has a weight above 0.
func PickVariant(variants []Variant, campaignUID, customerID string) string {
	base := hash64("variant", campaignUID, customerID)
	best, bestScore := "", math.Inf(-1)
	for _, v := range variants {
		if v.Weight <= 0 {
			continue
		}
		u := unitInterval(mix64(base ^ fnv64(v.Name)))
		score := -float64(v.Weight) / math.Log(u)
		if score > bestScore || (score == bestScore && v.Name < best) {
			best, bestScore = v.Name, score
		}
	}
	return best
}

// Shard returns the shard of a customer in [0, shards): a hash of the
// customer id alone, so a customer lands in the same shard in every run
// with the same number of shards. shards below 1 count as 1.
func Shard(customerID string, shards int32) int32 {
	if shards <= 1 {
		return 0
	}
	return int32(hash64("shard", "", customerID) % uint64(shards))
}

// fnv64 is the 64-bit FNV-1a hash of s.
func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix64 is the splitmix64 finalizer: a bijection on 64-bit integers with
// good avalanche, so related inputs give unrelated outputs.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unitInterval maps x to (0, 1) using its top 53 bits, never 0 or 1, so
// its logarithm is finite and negative.
func unitInterval(x uint64) float64 {
	return (float64(x>>11) + 0.5) / (1 << 53)
}
