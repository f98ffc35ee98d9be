package source

import (
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
}

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
	case err != nil:
		return fmt.Errorf("source: reading %s header: %w", kind, err)
	case bad != nil:
		return fmt.Errorf("source: %s header: %v", kind, bad)
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
		return err
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
