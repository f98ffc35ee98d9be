package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// CSV reads a transactions CSV and, optionally, a customers CSV (read
// first). Both have a header row; values are mapped by Mapping. Attribute
// and contact columns are read from the customers file when there is one
// (they must all be there), and otherwise from the transactions rows (a
// Customer is emitted for a row whose attribute or contact cells are not
// all empty, once per run of identical rows of one customer).
//
// The input is UTF-8 (a leading BOM is dropped), gzipped or not (detected
// by its magic bytes whatever the origin), quoted per RFC 4180.
type CSV struct {
	Transactions Opener // required
	Customers    Opener // optional
	Mapping      Mapping
	// Delimiter separates fields: an ASCII character other than '"', '\r'
	// and '\n'. Default ','.
	Delimiter rune
	// MaxRecordBytes bounds one record (default DefaultMaxRecordBytes); a
	// longer one, usually an unterminated quote, fails the read.
	MaxRecordBytes int
	// MaxBytes bounds each input after decompression: an endless download
	// or a decompression bomb fails the read with ErrInputTooLarge instead
	// of streaming forever. 0 means DefaultMaxInputBytes; a negative value
	// sets no limit (for trusted local files).
	MaxBytes int64
}

// DefaultMaxInputBytes is used when CSV.MaxBytes is 0: 20 times the
// 200 MB, 8.3 M-row log of docs/performance.md.
const DefaultMaxInputBytes = 4 << 30

var _ Reader = (*CSV)(nil)

func (c *CSV) delimiter() (byte, error) {
	d := c.Delimiter
	if d == 0 {
		return ',', nil
	}
	if d >= 0x80 || d == '"' || d == '\r' || d == '\n' {
		return 0, fmt.Errorf("source: CSV delimiter %q: want one ASCII character other than a quote or a line break", d)
	}
	return byte(d), nil
}

// Read streams the customers file, then the transactions file, to sink.
func (c *CSV) Read(ctx context.Context, sink Sink) (*Report, error) {
	if c.Transactions == nil {
		return nil, errors.New("source: CSV: no transactions input")
	}
	p, err := c.Mapping.compile()
	if err != nil {
		return nil, err
	}
	delim, err := c.delimiter()
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	if c.Customers != nil {
		if err := c.readInput(ctx, c.Customers, p, Customers, true, delim, sink, rep); err != nil {
			return rep, err
		}
	}
	if err := c.readInput(ctx, c.Transactions, p, Transactions, c.Customers == nil, delim, sink, rep); err != nil {
		return rep, err
	}
	return finish(rep, p.maxRatio)
}

func (c *CSV) readInput(ctx context.Context, open Opener, p *plan, kind Kind, requireExtra bool,
	delim byte, sink Sink, rep *Report) error {
	rc, err := open(ctx)
	if err != nil {
		return fmt.Errorf("source: opening %s: %w", kind, err)
	}
	defer rc.Close()
	r, err := Decompress(rc)
	if err != nil {
		return fmt.Errorf("source: reading %s: %w", kind, err)
	}
	switch {
	case c.MaxBytes == 0:
		r = &capReader{r: r, max: DefaultMaxInputBytes, what: kind.String()}
	case c.MaxBytes > 0:
		r = &capReader{r: r, max: c.MaxBytes, what: kind.String()}
	}
	return readCSV(ctx, r, p, kind, requireExtra, delim, c.MaxRecordBytes, sink, rep)
}

// readCSV reads one CSV input. It is the whole pipeline for one reader
// and one goroutine: scanner, header binding and emitter.
func readCSV(ctx context.Context, r io.Reader, p *plan, kind Kind, requireExtra bool, delim byte,
	maxRecord int, sink Sink, rep *Report) error {
	sc := newScanner(ctx, r, delim, 0, maxRecord)
	hdr, bad, err := sc.next()
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w (%s)", ErrEmptyInput, kind)
	case errors.Is(err, ErrRecordTooLong):
		return notCSVOr(sc, kind, fmt.Errorf("source: reading %s header: %w", kind, err))
	case err != nil:
		return fmt.Errorf("source: reading %s header: %w", kind, err)
	case bad != nil:
		return notCSVOr(sc, kind, fmt.Errorf("source: %s header: %v", kind, bad))
	}
	if len(hdr) >= maxHeaderFields {
		return fmt.Errorf("source: %s header has more than %d columns", kind, maxHeaderFields-1)
	}
	sc.maxFields = len(hdr) + 1
	names := make([]string, len(hdr))
	for i, h := range hdr {
		names[i] = string(h)
	}
	b, err := p.bind(kind, names, nil, requireExtra)
	if err != nil {
		return notCSVOr(sc, kind, err)
	}
	e := newEmitter(b, sink, rep)
	rowFn := e.row
	if b.canFast() {
		rowFn = e.fastRow
	}
	var row int64
	for {
		fields, bad, err := sc.next()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("source: reading %s after row %d: %w", kind, row, err)
		}
		row++
		e.dropped = sc.dropped
		if bad != nil {
			rep.Rows++
			e.reject(row, "", bad.Error())
			continue
		}
		if err := rowFn(row, fields); err != nil {
			return err
		}
	}
}

// notCSVOr returns, in place of err (a header that is malformed or lacks
// the mapped columns), a clearer error when the input is evidently not CSV
// text.
func notCSVOr(sc *scanner, kind Kind, err error) error {
	if what := notCSV(sc.head[:sc.headLen]); what != "" {
		return fmt.Errorf("%w: the %s input looks like %s", ErrNotCSV, kind, what)
	}
	return err
}

// notCSV names the format of an input from its first bytes, or returns ""
// when it may be CSV.
func notCSV(head []byte) string {
	for _, m := range [...]struct{ magic, what string }{
		{"\x89PNG", "a PNG image"},
		{"\xff\xd8\xff", "a JPEG image"},
		{"GIF8", "a GIF image"},
		{"%PDF", "a PDF document"},
		{"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"},
		{"\xd0\xcf\x11\xe0", "an Excel .xls workbook"},
		{"\x1f\x8b", "gzip data compressed twice"},
		{"\xff\xfe", "UTF-16 text (save it as UTF-8)"},
		{"\xfe\xff", "UTF-16 text (save it as UTF-8)"},
	} {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			return m.what
		}
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return "binary data"
	}
	text := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case len(text) == 0:
		return ""
	case text[0] == '{' || text[0] == '[':
		return "JSON"
	case text[0] == '<':
		return "HTML or XML"
	}
	return ""
}
