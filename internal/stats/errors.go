package stats

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrInvalidInput reports an argument outside a function's domain: a
	// negative count, more conversions than customers, an empty group, a
	// level, rate or share outside (0, 1).
	ErrInvalidInput = errors.New("stats: invalid input")
	// ErrUnderpowered reports a plan no audience can satisfy: groups too
	// small to detect any lift, or a lift so small that the audience it
	// needs does not fit in an int64.
	ErrUnderpowered = errors.New("stats: underpowered")
)
