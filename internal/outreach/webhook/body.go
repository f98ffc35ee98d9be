package webhook

import "io"

// limitedReader discards at most n bytes of a response body. It lives in
// the pooled request, so draining allocates nothing (io.CopyN would
// allocate a LimitedReader per response).
type limitedReader struct {
	r   io.Reader
	n   int64
	buf [4096]byte
}

func (l *limitedReader) discard() {
	for l.n > 0 {
		p := l.buf[:]
		if int64(len(p)) > l.n {
			p = p[:l.n]
		}
		k, err := l.r.Read(p)
		l.n -= int64(k)
		if err != nil {
			return
		}
	}
}
