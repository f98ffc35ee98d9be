package source

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Record-level CSV scanning: a byte-level fast path for lines without
// quotes, and an RFC 4180 parser for the (rare) lines that have one. The
// RFC 4180 parser follows encoding/csv (LazyQuotes off, no comment
// character, no space trimming) record for record, errors and
// resynchronisation included; the fuzz test checks that.

var (
	errBareQuote = errors.New(`bare " in unquoted field`)
	errQuote     = errors.New(`extraneous or missing " in quoted field`)
)

const (
	defaultBufferSize = 1 << 16
	// DefaultMaxRecordBytes bounds one CSV record.
	DefaultMaxRecordBytes = 4 << 20
	// maxHeaderFields bounds the columns of a header.
	maxHeaderFields = 10000
)

// scanner splits CSV input into records. Its state is self-contained so
// that separate scanners can parse separate parts of an input.
type scanner struct {
	ctx       context.Context
	src       io.Reader
	delim     byte
	maxRecord int

	buf        []byte
	start, end int
	eof        bool
	// quote is the index in buf of the first '"' at or after start, or -1
	// when buf[start:end] has none: a line before it needs no quote handling.
	quote int

	fields    [][]byte
	maxFields int // fields stored per record; more make a wrong field count
	// dropped counts the fields of the last record beyond maxFields, which
	// are not stored (a 10,000-field row costs no memory), so that its
	// rejection can still give its real width.
	dropped int
	rec     []byte // field bytes of a quoted record
	idx     []int  // field ends in rec
	began   bool   // BOM check done
	// head holds the first bytes of the input (BOM included), to name the
	// format of an input that is not CSV at all.
	head    [16]byte
	headLen int
}

func newScanner(ctx context.Context, src io.Reader, delim byte, bufSize, maxRecord int) *scanner {
	if bufSize <= 0 {
		bufSize = defaultBufferSize
	}
	if maxRecord <= 0 {
		maxRecord = DefaultMaxRecordBytes
	}
	if bufSize > maxRecord {
		bufSize = maxRecord
	}
	return &scanner{ctx: ctx, src: src, delim: delim, maxRecord: maxRecord,
		buf: make([]byte, bufSize), quote: -1, fields: make([][]byte, 0, 16), maxFields: maxHeaderFields}
}

// fill moves the unread bytes to the front of the buffer (growing it when
// they fill it) and reads until the buffer is full or the input ends.
func (s *scanner) fill() error {
	if s.eof {
		return nil
	}
	if s.ctx != nil {
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		if s.quote >= 0 {
			s.quote -= s.start
		}
		s.start, s.end = 0, n
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.maxRecord {
			return fmt.Errorf("%w: a record is limited to %d bytes", ErrRecordTooLong, s.maxRecord)
		}
		size := 2 * len(s.buf)
		if size > s.maxRecord {
			size = s.maxRecord
		}
		nb := make([]byte, size)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	old := s.end
	for empty := 0; s.end < len(s.buf); {
		n, err := s.src.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
			break
		}
		if err != nil {
			return err
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty > 100 {
			return io.ErrNoProgress
		}
	}
	if s.quote < 0 {
		if i := bytes.IndexByte(s.buf[old:s.end], '"'); i >= 0 {
			s.quote = old + i
		}
	}
	return nil
}

// next returns the next record's fields, which alias the scanner's buffers
// until the next call. bad is set (and fields meaningless) when the record
// is malformed; err is io.EOF at the end of the input, or a read error.
func (s *scanner) next() (fields [][]byte, bad, err error) {
	if !s.began {
		for !s.eof && s.end-s.start < 3 {
			if err := s.fill(); err != nil {
				return nil, nil, err
			}
		}
		s.headLen = copy(s.head[:], s.buf[s.start:s.end])
		if bytes.HasPrefix(s.buf[s.start:s.end], []byte("\xef\xbb\xbf")) {
			s.start += 3
		}
		s.began = true
	}
	for {
		data := s.buf[s.start:s.end]
		n, ok := s.split(data, s.eof)
		if !ok {
			if s.eof {
				return nil, nil, io.EOF
			}
			if err := s.fill(); err != nil {
				return nil, nil, err
			}
			continue
		}
		next := s.start + n
		if s.quote >= 0 && s.quote < next {
			n, bad, more := s.parseQuoted(data, s.eof)
			if more {
				if err := s.fill(); err != nil {
					return nil, nil, err
				}
				continue
			}
			s.start += n
			if s.quote < s.start {
				s.quote = -1
				if j := bytes.IndexByte(s.buf[s.start:s.end], '"'); j >= 0 {
					s.quote = s.start + j
				}
			}
			if bad != nil {
				return nil, bad, nil
			}
			s.fields = s.fields[:0]
			prev := 0
			for _, end := range s.idx {
				if len(s.fields) == s.maxFields {
					break
				}
				s.fields = append(s.fields, s.rec[prev:end:end])
				prev = end
			}
			s.dropped = len(s.idx) - len(s.fields)
			return s.fields, nil, nil
		}
		s.start = next
		// The "\r" of a "\r\n" ends the line's last field, unless that
		// field was dropped.
		last := s.fields[len(s.fields)-1]
		if k := len(last); k > 0 && last[k-1] == '\r' && s.dropped == 0 {
			s.fields[len(s.fields)-1] = last[:k-1]
		}
		if len(s.fields) == 1 && len(s.fields[0]) == 0 && s.dropped == 0 {
			continue // blank lines are not records (a line of delimiters is)
		}
		return s.fields, nil, nil
	}
}

const (
	lo7s  = 0x7F7F7F7F7F7F7F7F
	ones8 = 0x0101010101010101
)

// zeroBytes has the high bit set in exactly the bytes of x that are zero.
func zeroBytes(x uint64) uint64 { return ^((x&lo7s + lo7s) | x | lo7s) }

// split splits the line at the start of data into s.fields on the
// delimiter, eight bytes at a time. n is the length of the line with its
// '\n'. ok is false when data holds no whole line (at the end of the input
// the rest of data is the last line, unless data is empty). Fields beyond
// s.maxFields are not stored: the row then has maxFields fields, which the
// caller rejects as a wrong field count.
func (s *scanner) split(data []byte, atEOF bool) (n int, ok bool) {
	f := s.fields[:0]
	s.dropped = 0
	dm := ones8 * uint64(s.delim)
	const nm = ones8 * '\n'
	fs, i := 0, 0
	for ; i+8 <= len(data); i += 8 {
		w := binary.LittleEndian.Uint64(data[i:])
		m := zeroBytes(w^dm) | zeroBytes(w^nm)
		for m != 0 {
			k := i + bits.TrailingZeros64(m)>>3
			if len(f) < s.maxFields {
				f = append(f, data[fs:k:k])
			} else {
				s.dropped++
			}
			if data[k] == '\n' {
				s.fields = f
				return k + 1, true
			}
			fs = k + 1
			m &= m - 1
		}
	}
	for ; i < len(data); i++ {
		c := data[i]
		if c != s.delim && c != '\n' {
			continue
		}
		if len(f) < s.maxFields {
			f = append(f, data[fs:i:i])
		} else {
			s.dropped++
		}
		if c == '\n' {
			s.fields = f
			return i + 1, true
		}
		fs = i + 1
	}
	if !atEOF || len(data) == 0 {
		s.fields = f
		return 0, false
	}
	if len(f) < s.maxFields {
		f = append(f, data[fs:])
	} else {
		s.dropped++
	}
	s.fields = f
	return len(data), true
}

// physLine returns the physical line at data[off:] without its line
// ending ("\n", "\r\n", or a lone "\r" at the end of the input), whether it
// ended in '\n', and where the next line starts. ok is false when the line
// may continue beyond data.
func physLine(data []byte, off int, atEOF bool) (content []byte, hasNL bool, next int, ok bool) {
	i := bytes.IndexByte(data[off:], '\n')
	if i < 0 {
		if !atEOF {
			return nil, false, 0, false
		}
		c := data[off:]
		if n := len(c); n > 0 && c[n-1] == '\r' {
			c = c[:n-1]
		}
		return c, false, len(data), true
	}
	c := data[off : off+i]
	if n := len(c); n > 0 && c[n-1] == '\r' {
		c = c[:n-1]
	}
	return c, true, off + i + 1, true
}

// parseQuoted parses the record at the start of data (not a blank line)
// into s.rec and s.idx, the way encoding/csv does. n is the number of bytes
// consumed: through the end of the last physical line looked at, also when
// the record is malformed. more means data ends inside the record.
func (s *scanner) parseQuoted(data []byte, atEOF bool) (n int, bad error, more bool) {
	s.rec, s.idx = s.rec[:0], s.idx[:0]
	line, hasNL, next, ok := physLine(data, 0, atEOF)
	if !ok {
		return 0, nil, true
	}
	d := s.delim
	for {
		if len(line) == 0 || line[0] != '"' {
			// Unquoted field.
			i := bytes.IndexByte(line, d)
			f := line
			if i >= 0 {
				f = line[:i]
			}
			if bytes.IndexByte(f, '"') >= 0 {
				return next, errBareQuote, false
			}
			s.rec = append(s.rec, f...)
			s.idx = append(s.idx, len(s.rec))
			if i < 0 {
				return next, nil, false
			}
			line = line[i+1:]
			continue
		}
		// Quoted field.
		line = line[1:]
	quoted:
		for {
			i := bytes.IndexByte(line, '"')
			switch {
			case i >= 0:
				s.rec = append(s.rec, line[:i]...)
				line = line[i+1:]
				switch {
				case len(line) > 0 && line[0] == '"':
					s.rec = append(s.rec, '"')
					line = line[1:]
				case len(line) > 0 && line[0] == d:
					line = line[1:]
					s.idx = append(s.idx, len(s.rec))
					break quoted
				case len(line) == 0:
					s.idx = append(s.idx, len(s.rec))
					return next, nil, false
				default:
					return next, errQuote, false
				}
			case len(line) > 0 || hasNL:
				// The field goes on past the end of the line.
				s.rec = append(s.rec, line...)
				if hasNL {
					s.rec = append(s.rec, '\n')
				}
				line, hasNL, next, ok = physLine(data, next, atEOF)
				if !ok {
					return 0, nil, true
				}
			default:
				return next, errQuote, false // the input ends inside the quotes
			}
		}
	}
}
