package cli

import (
	"os"
	"testing"
	"time"
)

func TestProbeWrite(t *testing.T) {
	out := os.Getenv("PROBE_OUT")
	if out == "" { t.Skip() }
	o := DefaultSynth()
	o.Customers = 1000000
	o.Alpha, o.B, o.Split = 1, 6, 0.22
	o.Start = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	o.End = time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)
	f, _ := os.Create(out)
	st, err := Synthesize(o, f, nil)
	f.Close()
	if err != nil { t.Fatal(err) }
	t.Logf("%+v", st)
}
