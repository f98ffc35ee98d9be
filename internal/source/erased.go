package source

import (
	"bytes"
	"context"
)

// WithoutErased is a Reader that leaves out the records of erased
// customers (a CustomerErasure's tombstones), so a re-import does not
// bring them back. Their rows count in Report.Rows and Report.Erased, not
// in Transactions, Customers or Summaries.
type WithoutErased struct {
	Reader Reader
	// Erased reports whether a customer id was erased; it is asked once
	// per run of rows of the same customer (a tombstone check hashes the
	// id).
	Erased func(customerID []byte) bool
}

// Read implements Reader.
func (w *WithoutErased) Read(ctx context.Context, sink Sink) (*Report, error) {
	f := &erasedSink{sink: sink, erased: w.Erased}
	rep, err := w.Reader.Read(ctx, f)
	if rep != nil {
		rep.Transactions -= f.transactions
		rep.Customers -= f.customers
		rep.Summaries -= f.summaries
		rep.Erased += f.transactions + f.customers + f.summaries
	}
	return rep, err
}

// erasedSink passes on the records of customers not erased. Readers call
// a sink from one goroutine, so the last decision is kept without a lock.
type erasedSink struct {
	sink   Sink
	erased func([]byte) bool

	last       []byte
	lastErased bool

	transactions, customers, summaries int64
}

// drop reports whether id was erased, remembering the last id's answer:
// a source's rows usually come grouped by customer.
func (s *erasedSink) drop(id []byte) bool {
	if s.last != nil && bytes.Equal(id, s.last) {
		return s.lastErased
	}
	s.last = append(s.last[:0], id...)
	s.lastErased = s.erased(id)
	return s.lastErased
}

func (s *erasedSink) Transaction(t *Transaction) error {
	if s.drop(t.CustomerID) {
		s.transactions++
		return nil
	}
	return s.sink.Transaction(t)
}

func (s *erasedSink) Customer(c *Customer) error {
	if s.drop([]byte(c.ID)) {
		s.customers++
		return nil
	}
	return s.sink.Customer(c)
}

func (s *erasedSink) Summary(m *Summary) error {
	if s.drop([]byte(m.ID)) {
		s.summaries++
		return nil
	}
	return s.sink.Summary(m)
}
