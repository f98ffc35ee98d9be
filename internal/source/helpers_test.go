package source

import (
	"bytes"
	"compress/gzip"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
)

// memSink keeps copies of everything it is sent.
type memSink struct {
	txs   []Transaction
	custs []Customer
	sums  []Summary
	fail  error // returned from every call when set
}

func (s *memSink) Transaction(t *Transaction) error {
	c := *t
	c.CustomerID = bytes.Clone(t.CustomerID)
	s.txs = append(s.txs, c)
	return s.fail
}

func (s *memSink) Customer(c *Customer) error {
	k := *c
	k.Attributes = maps.Clone(c.Attributes)
	s.custs = append(s.custs, k)
	return s.fail
}

func (s *memSink) Summary(m *Summary) error {
	k := *m
	k.Attributes = maps.Clone(m.Attributes)
	s.sums = append(s.sums, k)
	return s.fail
}

func day(s string) int32 {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return int32(t.Unix() / 86400)
}

func gz(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// assertNoPersonalData fails when a rejection sample (or the error text)
// contains any of the raw values.
func assertNoPersonalData(t *testing.T, rep *Report, err error, values ...string) {
	t.Helper()
	var texts []string
	if rep != nil {
		for _, s := range rep.Samples {
			texts = append(texts, s.String())
			if !knownReason(s.Reason) {
				t.Errorf("reason %q is not one of the fixed reasons", s.Reason)
			}
		}
	}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for _, txt := range texts {
		for _, v := range values {
			if v != "" && strings.Contains(txt, v) {
				t.Errorf("%q contains the raw value %q", txt, v)
			}
		}
	}
}

func wantErrAs[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("error %v (%T), want %T", err, err, target)
	}
	return target
}
