package segment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// PreviewStats describe what a rule selects from a set of customers,
// without writing anything: the numbers a marketer checks before applying
// a Segment.
type PreviewStats struct {
	// Rule is the rule's source.
	Rule string
	// Customers is the number of customers evaluated; Size of them are
	// members, Share = Size / Customers (0 to 1).
	Customers, Size int64
	Share           float64
	// Value is the members' total expected value, TotalValue everyone's.
	Value, TotalValue float64
	// Errors counts customers for whom the rule failed (not members);
	// FirstError is the first message, without customer data.
	Errors     int64
	FirstError string
	// Members and Everyone are the score distributions of the members and
	// of every customer evaluated.
	Members, Everyone Distribution
}

// Distribution summarises the scores a retention team looks at first.
type Distribution struct {
	PAlive        Summary
	ExpectedValue Summary
	RecencyDays   Summary
}

// Summary is a distribution in a few numbers. The quantiles come from a
// sketch with 0.5% relative accuracy (exact for whole numbers such as
// days), so a preview of millions of customers stays small.
type Summary struct {
	Count                           int64
	Min, P10, P25, Median, P75, P90 float64
	Max, Mean                       float64
}

// Previewer accumulates PreviewStats one customer at a time, for callers
// that are handed customers by a callback (scoring.Score's emit). It is
// not safe for concurrent use.
type Previewer struct {
	rule     *Rule
	m        *Matcher
	stats    PreviewStats
	members  dist
	everyone dist
}

// NewPreviewer starts a preview of rule evaluated at now.
func NewPreviewer(rule *Rule, now time.Time) *Previewer {
	return &Previewer{rule: rule, m: rule.NewMatcher(now), members: newDist(), everyone: newDist()}
}

// Add evaluates the rule for c (which it does not keep).
func (p *Previewer) Add(c *customer.Scored) {
	s := &p.stats
	s.Customers++
	s.TotalValue += c.Scores.ExpectedValue
	p.everyone.add(c)
	ok, err := p.m.Match(c)
	if err != nil {
		s.Errors++
		if s.FirstError == "" {
			s.FirstError = evalMessage(err)
		}
		return
	}
	if ok {
		s.Size++
		s.Value += c.Scores.ExpectedValue
		p.members.add(c)
	}
}

// Stats returns the statistics of the customers added so far.
func (p *Previewer) Stats() *PreviewStats {
	s := p.stats
	s.Rule = p.rule.String()
	if s.Customers > 0 {
		s.Share = float64(s.Size) / float64(s.Customers)
	}
	s.Members = p.members.summary()
	s.Everyone = p.everyone.summary()
	return &s
}

// Preview evaluates rule over customers at now. Pass a slice as
// slices.Values(customers). It fails only when ctx is done or rule is
// nil; customers for whom the rule fails are counted in Errors.
func Preview(ctx context.Context, rule *Rule, customers iter.Seq[*customer.Scored], now time.Time) (*PreviewStats, error) {
	if rule == nil {
		return nil, errors.New("segment: preview: nil rule")
	}
	p := NewPreviewer(rule, now)
	var n int
	for c := range customers {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		p.Add(c)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return p.Stats(), nil
}

// Print writes the preview as a table:
//
//	rule      customer.pAlive < 0.5 && customer.recencyDays <= 180
//	members   1,234 of 10,000 customers (12.3%)
//	value     45,678.90 of 123,456.78 expected (37.0%)
//
//	                 group     min     p10  ...
//	P(alive)         members   0.012   ...
//	                 everyone  ...
func (s *PreviewStats) Print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "rule      %s\n", oneLine(s.Rule))
	fmt.Fprintf(&b, "members   %s of %s customers (%s)\n", group(float64(s.Size), 0), group(float64(s.Customers), 0), percent(s.Share))
	valueShare := 0.0
	if s.TotalValue > 0 {
		valueShare = s.Value / s.TotalValue
	}
	fmt.Fprintf(&b, "value     %s of %s expected (%s)\n", group(s.Value, 2), group(s.TotalValue, 2), percent(valueShare))
	if s.Errors > 0 {
		fmt.Fprintf(&b, "errors    %s customers: the rule failed, they are not members (first: %s)\n", group(float64(s.Errors), 0), s.FirstError)
	}
	b.WriteString("\n")
	table := [][]string{{"", "group", "count", "min", "p10", "p25", "median", "p75", "p90", "max", "mean"}}
	rows := []struct {
		name     string
		m, e     Summary
		decimals int
	}{
		{"P(alive)", s.Members.PAlive, s.Everyone.PAlive, 3},
		{"expected value", s.Members.ExpectedValue, s.Everyone.ExpectedValue, 2},
		{"recency (days)", s.Members.RecencyDays, s.Everyone.RecencyDays, 0},
	}
	for _, r := range rows {
		for i, g := range []struct {
			name string
			s    Summary
		}{{"members", r.m}, {"everyone", r.e}} {
			name := ""
			if i == 0 {
				name = r.name
			}
			row := []string{name, g.name, group(float64(g.s.Count), 0)}
			for _, v := range []float64{g.s.Min, g.s.P10, g.s.P25, g.s.Median, g.s.P75, g.s.P90, g.s.Max, g.s.Mean} {
				if g.s.Count == 0 {
					row = append(row, "-")
				} else {
					row = append(row, group(v, r.decimals))
				}
			}
			if g.s.Count > 0 && r.decimals == 0 {
				row[len(row)-1] = group(g.s.Mean, 1)
			}
			table = append(table, row)
		}
	}
	writeTable(&b, table, 2)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable writes rows with the first left columns aligned left and
// the others right, two spaces apart.
func writeTable(b *strings.Builder, rows [][]string, left int) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if i < left {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func percent(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

// group formats v with thousands separators.
func group(v float64, decimals int) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', decimals, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// dist sketches the three scores of one group.
type dist struct {
	pAlive, value, recency sketch
}

func newDist() dist {
	return dist{pAlive: newSketch(false), value: newSketch(false), recency: newSketch(true)}
}

func (d *dist) add(c *customer.Scored) {
	d.pAlive.add(c.Scores.PAlive)
	d.value.add(c.Scores.ExpectedValue)
	d.recency.add(float64(c.Features.RecencyDays))
}

func (d *dist) summary() Distribution {
	return Distribution{PAlive: d.pAlive.summary(), ExpectedValue: d.value.summary(), RecencyDays: d.recency.summary()}
}

// sketchAlpha is the relative accuracy of the quantiles.
const sketchAlpha = 0.005

var (
	sketchGamma    = (1 + sketchAlpha) / (1 - sketchAlpha)
	sketchLogGamma = math.Log(sketchGamma)
)

// sketch is a quantile sketch with relative accuracy (as DDSketch,
// Masson et al. 2019): a positive value v falls in bucket
// ceil(log_γ v), γ = (1+α)/(1−α), and a bucket reports 2γ^i/(γ+1), within
// α of every value in it. Negative values mirror the positive ones; exact
// sketches count whole numbers by value.
type sketch struct {
	exact    bool
	n        int64
	sum      float64
	min, max float64
	zeros    int64
	pos, neg map[int64]int64
}

func newSketch(exact bool) sketch {
	return sketch{exact: exact, pos: map[int64]int64{}, neg: map[int64]int64{}, min: math.Inf(1), max: math.Inf(-1)}
}

func (s *sketch) add(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	s.n++
	s.sum += v
	s.min = math.Min(s.min, v)
	s.max = math.Max(s.max, v)
	switch {
	case v == 0:
		s.zeros++
	case v > 0:
		s.pos[s.key(v)]++
	default:
		s.neg[s.key(-v)]++
	}
}

// key is the bucket of v > 0.
func (s *sketch) key(v float64) int64 {
	if s.exact {
		return int64(math.Round(v))
	}
	return int64(math.Ceil(math.Log(v) / sketchLogGamma))
}

func (s *sketch) value(k int64) float64 {
	if s.exact {
		return float64(k)
	}
	return 2 * math.Pow(sketchGamma, float64(k)) / (sketchGamma + 1)
}

// quantile returns the value of rank ceil(q·n) (nearest rank), clamped to
// [min, max].
func (s *sketch) quantile(keysNeg, keysPos []int64, q float64) float64 {
	rank := int64(math.Ceil(q * float64(s.n)))
	rank = max(rank, 1)
	var seen int64
	for _, k := range keysNeg { // most negative first
		if seen += s.neg[k]; seen >= rank {
			return s.clamp(-s.value(k))
		}
	}
	if seen += s.zeros; seen >= rank {
		return 0
	}
	for _, k := range keysPos {
		if seen += s.pos[k]; seen >= rank {
			return s.clamp(s.value(k))
		}
	}
	return s.max
}

func (s *sketch) clamp(v float64) float64 { return math.Min(math.Max(v, s.min), s.max) }

func (s *sketch) summary() Summary {
	if s.n == 0 {
		return Summary{}
	}
	neg := make([]int64, 0, len(s.neg))
	for k := range s.neg {
		neg = append(neg, k)
	}
	sort.Slice(neg, func(i, j int) bool { return neg[i] > neg[j] })
	pos := make([]int64, 0, len(s.pos))
	for k := range s.pos {
		pos = append(pos, k)
	}
	sort.Slice(pos, func(i, j int) bool { return pos[i] < pos[j] })
	return Summary{
		Count: s.n, Min: s.min, Max: s.max, Mean: s.sum / float64(s.n),
		P10: s.quantile(neg, pos, 0.10), P25: s.quantile(neg, pos, 0.25), Median: s.quantile(neg, pos, 0.50),
		P75: s.quantile(neg, pos, 0.75), P90: s.quantile(neg, pos, 0.90),
	}
}
