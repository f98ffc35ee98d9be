package cli

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

// SynthOptions describe a synthetic customer base: customers arrive
// uniformly over [Start, End] and then buy and lapse as BG/NBD says
// (Fader, Hardie & Lee 2005, §3), with Gamma-Gamma purchase values.
type SynthOptions struct {
	Seed      uint64
	Customers int
	// Start and End bound the purchase dates (inclusive). Each customer's
	// first purchase day is uniform over them, so customers keep arriving.
	Start, End time.Time
	// BG/NBD parameters per week: λ ~ Gamma(R, rate Alpha), p ~ Beta(A, B).
	R, Alpha, A, B float64
	// Gamma-Gamma parameters: ν ~ Gamma(Q, rate V), value ~ Gamma(P, rate ν).
	P, Q, V float64
	// Split is the share of purchase days recorded as two rows (a basket
	// split in two), so that same-day rows must be merged.
	Split float64
}

// DefaultSynth has CDNOW-like parameters (the published BG/NBD and
// Gamma-Gamma estimates of the CDNOW sample) over two years.
func DefaultSynth() SynthOptions {
	return SynthOptions{Seed: 1, Customers: 10000,
		Start: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC),
		R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426, P: 6.25, Q: 3.74, V: 15.44, Split: 0.2}
}

// SynthStats counts what Synthesize wrote.
type SynthStats struct {
	Customers, Transactions, PurchaseDays int64
}

func (o SynthOptions) validate() error {
	for _, v := range []struct {
		name string
		v    float64
	}{{"r", o.R}, {"alpha", o.Alpha}, {"a", o.A}, {"b", o.B}, {"p", o.P}, {"q", o.Q}, {"v", o.V}} {
		if !(v.v > 0) || math.IsInf(v.v, 0) {
			return fmt.Errorf("parameter %s = %v must be positive", v.name, v.v)
		}
	}
	switch {
	case o.Customers < 1 || o.Customers > 1<<31-1:
		return fmt.Errorf("customers %d must be positive", o.Customers)
	case o.Start.IsZero() || o.End.IsZero() || o.End.Before(o.Start):
		return errors.New("start must be a date on or before end")
	case o.End.Sub(o.Start) > 100*366*24*time.Hour:
		return errors.New("the period from start to end is longer than 100 years")
	case !(o.Split >= 0 && o.Split <= 1):
		return fmt.Errorf("split %v must be between 0 and 1", o.Split)
	}
	return nil
}

// gcust is one synthetic customer while the calendar runs.
type gcust struct {
	rng     rand.PCG
	t       float64 // weeks from the first purchase to the latest one
	lambda  float64 // purchases per week while alive
	p       float64 // drop-out probability after a repeat purchase
	nu      float64 // spend rate: mean value P/nu
	first   int32   // day offset of the first purchase
	lastDay int32   // day offset of the latest purchase
	days    int32   // purchase days
	bought  bool    // the first purchase is made
	dropped bool
}

// pcgRef lets one rand.Rand draw from any customer's own stream.
type pcgRef struct{ p *rand.PCG }

func (s *pcgRef) Uint64() uint64 { return s.p.Uint64() }

// gammaRand draws Gamma(shape k, rate 1) (Marsaglia & Tsang 2000).
func gammaRand(r *rand.Rand, k float64) float64 {
	if k < 1 {
		u := r.Float64()
		return gammaRand(r, k+1) * math.Pow(u, 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

func betaRand(r *rand.Rand, a, b float64) float64 {
	x := gammaRand(r, a)
	y := gammaRand(r, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// Synthesize writes transactions (customer_id,date,amount; sorted by date,
// as a transaction log is) to tx and, when customers is not nil, one row of
// attributes per customer. The output depends only on the options: the
// same seed gives the same bytes. Each customer draws from its own random
// stream, so the calendar order does not change what a customer does.
func Synthesize(o SynthOptions, tx io.Writer, customers io.Writer) (SynthStats, error) {
	var st SynthStats
	if err := o.validate(); err != nil {
		return st, err
	}
	start := time.Date(o.Start.Year(), o.Start.Month(), o.Start.Day(), 0, 0, 0, 0, time.UTC)
	end := time.Date(o.End.Year(), o.End.Month(), o.End.Day(), 0, 0, 0, 0, time.UTC)
	ndays := int32(end.Sub(start).Hours()/24) + 1
	dates := make([][]byte, ndays)
	for d := range dates {
		dates[d] = []byte(start.AddDate(0, 0, d).Format("2006-01-02"))
	}
	cs := make([]gcust, o.Customers)
	ref := &pcgRef{}
	r := rand.New(ref)
	buckets := make([][]int32, ndays)
	for i := range cs {
		c := &cs[i]
		c.rng = *rand.NewPCG(o.Seed, uint64(i))
		ref.p = &c.rng
		c.first = int32(r.IntN(int(ndays)))
		c.lambda = gammaRand(r, o.R) / o.Alpha
		c.p = betaRand(r, o.A, o.B)
		c.nu = gammaRand(r, o.Q) / o.V
		buckets[c.first] = append(buckets[c.first], int32(i))
	}
	w := bufio.NewWriterSize(tx, 1<<20)
	w.WriteString("customer_id,date,amount\n")
	var line []byte
	var werr error
	row := func(i int32, d int32, amt float64) {
		line = appendID(line[:0], i)
		line = append(line, ',')
		line = append(line, dates[d]...)
		line = append(line, ',')
		line = strconv.AppendFloat(line, amt, 'f', 2, 64)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil && werr == nil {
			werr = err
		}
		st.Transactions++
	}
	for d := int32(0); d < ndays && werr == nil; d++ {
		b := buckets[d]
		for k := 0; k < len(b); k++ {
			i := b[k]
			c := &cs[i]
			ref.p = &c.rng
			// One purchase: its value, as one or two rows.
			v := math.Max(gammaRand(r, o.P)/c.nu, 0.01)
			v = math.Round(v*100) / 100
			if r.Float64() < o.Split {
				part := math.Max(math.Round(v*r.Float64()*100)/100, 0.01)
				row(i, d, part)
				row(i, d, math.Max(math.Round((v-part)*100)/100, 0.01))
			} else {
				row(i, d, v)
			}
			if c.days == 0 || c.lastDay != d {
				c.lastDay = d
				st.PurchaseDays++
				c.days++
			}
			// BG/NBD: after a repeat purchase the customer drops out with
			// probability p; otherwise the next purchase comes after an
			// exponential wait of rate λ.
			if c.bought && r.Float64() < c.p {
				c.dropped = true
				continue
			}
			c.bought = true
			c.t += r.ExpFloat64() / c.lambda
			nd := int64(c.first) + int64(math.Floor(c.t*7))
			if c.t*7 < float64(ndays) && nd < int64(ndays) {
				buckets[nd] = append(buckets[nd], i)
				if nd == int64(d) {
					b = buckets[d]
				}
			}
		}
		buckets[d] = nil
	}
	if werr != nil {
		return st, werr
	}
	if err := w.Flush(); err != nil {
		return st, err
	}
	st.Customers = int64(o.Customers)
	if customers != nil {
		if err := writeCustomers(o, cs, customers); err != nil {
			return st, err
		}
	}
	return st, nil
}

func appendID(b []byte, i int32) []byte {
	b = append(b, 'c')
	s := strconv.AppendInt(nil, int64(i)+1, 10)
	for k := len(s); k < 7; k++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// cultures give first names in several scripts with a matching locale and
// time zone.
var cultures = []struct {
	locale string
	zones  []string
	names  []string
	weight float64
}{
	{"en-US", []string{"America/New_York", "America/Chicago", "America/Los_Angeles"}, []string{"Emma", "Liam", "Olivia", "Noah", "Ava", "James"}, 0.30},
	{"de-DE", []string{"Europe/Berlin"}, []string{"Lukas", "Anna", "Jonas", "Lea", "Jürgen"}, 0.12},
	{"fa-IR", []string{"Asia/Tehran"}, []string{"نیلوفر", "آرش", "مریم", "رضا", "سارا", "کوروش"}, 0.10},
	{"fr-FR", []string{"Europe/Paris"}, []string{"Chloé", "Léo", "Manon", "Hugo"}, 0.08},
	{"es-MX", []string{"America/Mexico_City"}, []string{"José", "Sofía", "Mateo", "Valentina"}, 0.08},
	{"ja-JP", []string{"Asia/Tokyo"}, []string{"さくら", "陽翔", "結衣", "蓮"}, 0.07},
	{"zh-CN", []string{"Asia/Shanghai"}, []string{"王芳", "李伟", "张敏", "刘洋"}, 0.07},
	{"ar-EG", []string{"Africa/Cairo"}, []string{"محمد", "فاطمة", "أحمد", "مريم"}, 0.06},
	{"ru-RU", []string{"Europe/Moscow"}, []string{"Алексей", "Мария", "Дмитрий", "Анна"}, 0.05},
	{"hi-IN", []string{"Asia/Kolkata"}, []string{"प्रिया", "अर्जुन", "अनन्या", "राहुल"}, 0.04},
	{"el-GR", []string{"Europe/Athens"}, []string{"Δημήτρης", "Ελένη", "Γιώργος"}, 0.03},
}

// poisson draws a Poisson count (Knuth; small means only).
func poisson(r *rand.Rand, mean float64) int {
	l := math.Exp(-mean)
	k, p := 0, 1.0
	for {
		p *= r.Float64()
		if p <= l || k > 1000 {
			return k
		}
		k++
	}
}

// writeCustomers writes the customers file: attributes drawn from a second
// stream per customer, some of them tied to the customer's behaviour
// (complaints rise with the drop-out probability and with lapsing,
// satisfaction falls with complaints).
func writeCustomers(o SynthOptions, cs []gcust, out io.Writer) error {
	bw := bufio.NewWriterSize(out, 1<<20)
	w := csv.NewWriter(bw)
	if err := w.Write([]string{"customer_id", "first_name", "email", "timezone", "locale", "opt_out",
		"complaints", "satisfaction", "referral_source", "discount_share", "cost_to_serve"}); err != nil {
		return err
	}
	var total float64
	for _, c := range cultures {
		total += c.weight
	}
	rec := make([]string, 11)
	var id []byte
	for i := range cs {
		c := &cs[i]
		r := rand.New(rand.NewPCG(o.Seed^0x9e3779b97f4a7c15, uint64(i)))
		u := r.Float64() * total
		cu := cultures[len(cultures)-1]
		for _, x := range cultures {
			if u < x.weight {
				cu = x
				break
			}
			u -= x.weight
		}
		id = appendID(id[:0], int32(i))
		lapse := 0.0
		if c.dropped {
			lapse = 1
		}
		complaints := poisson(r, 0.1+1.2*c.p+0.6*lapse)
		sat := math.Round(4.4 - 0.7*float64(complaints) + 0.8*r.NormFloat64())
		sat = math.Min(math.Max(sat, 1), 5)
		ref := ""
		switch v := r.Float64(); {
		case v < 0.12:
			ref = "friend"
		case v < 0.18:
			ref = "partner"
		}
		disc := betaRand(r, 0.8, 3)
		cost := math.Round(6*math.Exp(0.8*r.NormFloat64())*100) / 100
		rec[0] = string(id)
		rec[1] = cu.names[r.IntN(len(cu.names))]
		rec[2] = strings.ToLower(string(id)) + "@example.org"
		rec[3] = cu.zones[r.IntN(len(cu.zones))]
		rec[4] = cu.locale
		rec[5] = strconv.FormatBool(r.Float64() < 0.03)
		rec[6] = strconv.Itoa(complaints)
		rec[7] = strconv.Itoa(int(sat))
		rec[8] = ref
		rec[9] = strconv.FormatFloat(math.Round(disc*1000)/1000, 'f', -1, 64)
		rec[10] = strconv.FormatFloat(cost, 'f', 2, 64)
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// createOutput creates path, gzip-compressed when it ends in .gz. The
// returned close function flushes and closes.
func createOutput(path string) (io.Writer, func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, f.Close, nil
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	zw.ModTime = time.Time{} // deterministic bytes
	return zw, func() error {
		if err := zw.Close(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}, nil
}
