// Package parallel splits index ranges across goroutines.
package parallel

import "sync"

// Chunks runs fn over [0, n) split into w contiguous chunks, chunk i on its
// own goroutine and chunk 0 on the caller's, and returns when all are done.
// Callers that sum per-chunk partials in chunk order get results that do
// not depend on scheduling. With w <= 1, fn runs once over the whole range.
func Chunks(w, n int, fn func(chunk, lo, hi int)) {
	if w <= 1 {
		fn(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < w; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			fn(i, i*n/w, (i+1)*n/w)
		}(i)
	}
	fn(0, 0, n/w)
	wg.Wait()
}
