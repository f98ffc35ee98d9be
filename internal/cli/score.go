// Package cli holds the offline subcommands of retention-operator that need
// no cluster: `score` scores a CSV file through exactly the path the
// operator uses (scoring.Score), and `generate` writes synthetic customers.
// Each command takes its arguments and output streams and returns the exit
// code: 0 success, 1 failure, 2 usage error.
package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/retention-dev/retention-operator/internal/cliflag"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// usageError is a bad command line: exit code 2.
type usageError = cliflag.UsageError

func usagef(format string, args ...any) error { return cliflag.Usagef(format, args...) }

// parseFlags parses a command's flags (see cliflag.Parse).
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	return cliflag.Parse(fs, args)
}

// exit prints err and returns its exit code.
func exit(cmd string, stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "retention-operator %s: %v\n", cmd, err)
	var ue *usageError
	var ce *scoring.CustomScoreError
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.Is(err, scoring.ErrInvalidOptions) {
		fmt.Fprintf(stderr, "run 'retention-operator %s -h' for usage\n", cmd)
		return 2
	}
	return 1
}

// modelKeys are the JSON key prefixes of the models.
var modelKeys = map[btyd.ModelName]string{
	btyd.NameBGNBD: "bgnbd", btyd.NameMBGNBD: "mbgnbd", btyd.NameParetoNBD: "paretoNBD", scoring.RFMOnly: "rfm",
}

// modelFlag names the models on the command line.
var modelFlag = map[string]btyd.ModelName{
	"bgnbd": btyd.NameBGNBD, "mbgnbd": btyd.NameMBGNBD, "paretonbd": btyd.NameParetoNBD, "auto": scoring.Auto,
}

type customScores []scoring.CustomScore

func (c *customScores) String() string { return "" }
func (c *customScores) Set(v string) error {
	name, expr, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return errors.New("want NAME=EXPRESSION")
	}
	*c = append(*c, scoring.CustomScore{Name: strings.TrimSpace(name), Expression: expr})
	return nil
}

type scoreCmd struct {
	csvPath, customersPath              string
	customerCol, dateCol, amountCol     string
	layout, delimiter, timeUnit         string
	calEnd, holdoutEnd, model, output   string
	plot, cpuProfile                    string
	horizon, discount, atRisk, maxRejct float64
	progress, stats                     bool
	workers                             int
	scores                              customScores
}

// Score runs `retention-operator score`: it scores a transactions CSV
// offline through scoring.Score and prints the fitted models and the
// population summary as a table, or as JSON (nested objects) with --output json.
func Score(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return exit("score", stderr, runScore(ctx, args, stdout, stderr))
}

func (c *scoreCmd) flags(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.csvPath, "csv", "", "transactions CSV `file` (gzipped or not); required")
	fs.StringVar(&c.customersPath, "customers", "", "optional customers CSV `file`: attributes and contact columns by header")
	fs.StringVar(&c.customerCol, "customer-col", "customer_id", "customer id column")
	fs.StringVar(&c.dateCol, "date-col", "date", "transaction date column")
	fs.StringVar(&c.amountCol, "amount-col", "amount", "transaction amount column")
	fs.StringVar(&c.layout, "date-layout", "", "Go reference `layout` of the dates, e.g. 20060102 (default: RFC 3339, 2006-01-02 or 20060102)")
	fs.StringVar(&c.delimiter, "delimiter", ",", "field delimiter (one character, or \"tab\")")
	fs.StringVar(&c.timeUnit, "time-unit", "week", "model time unit: week or day")
	fs.StringVar(&c.calEnd, "calibration-end", "", "`date` (YYYY-MM-DD): transactions after it are ignored for the fit; T counts the days from a customer's first purchase to it (default: today)")
	fs.StringVar(&c.holdoutEnd, "holdout-end", "", "`date` (YYYY-MM-DD), with --calibration-end: report each model's forecast accuracy on the holdout after the calibration end, and publish scores refitted up to this date")
	fs.StringVar(&c.model, "model", "", "bgnbd, mbgnbd, paretonbd or auto (default bgnbd; auto picks the lowest holdout error)")
	fs.Float64Var(&c.horizon, "horizon", 52, "forecast horizon in `weeks`")
	fs.Float64Var(&c.discount, "annual-discount", 10, "annual discount rate of expected value, in `percent`")
	fs.Float64Var(&c.atRisk, "at-risk", scoring.DefaultAtRiskThreshold, "P(alive) `threshold` under which a repeat buyer is at risk")
	fs.Float64Var(&c.maxRejct, "max-rejected", source.DefaultMaxRejectedRatio, "largest share of rejected rows tolerated")
	fs.StringVar(&c.output, "output", "table", "output format: table or json")
	fs.StringVar(&c.plot, "plot", "", "write a PNG `file` of the holdout table (needs --holdout-end)")
	fs.BoolVar(&c.progress, "progress", false, "show a progress bar on stderr even when it is not a terminal")
	fs.BoolVar(&c.stats, "stats", false, "also print stage durations and peak memory")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the scoring to `file` (go tool pprof)")
	fs.IntVar(&c.workers, "workers", 0, "goroutines for aggregation and scoring (default min(2, CPUs))")
	fs.Var(&c.scores, "score", "custom score `NAME=CEL` (repeatable), e.g. risk=(1.0-customer.pAlive)*customer.expectedValue")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: retention-operator score --csv FILE [flags]\n\nScores a transactions CSV offline as the operator does and prints the fitted models\nand the population summary.\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func parseDate(flagName, v string) (time.Time, error) {
	t, err := time.Parse("2006-01-02", strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, usagef("--%s %q: want a date like 2006-01-02", flagName, v)
	}
	return t, nil
}

// options turns the flags into a reader and scoring options.
func (c *scoreCmd) options(stderr io.Writer) (*source.CSV, scoring.Options, *counter, error) {
	var o scoring.Options
	if c.csvPath == "" {
		return nil, o, nil, usagef("--csv is required")
	}
	switch strings.ToLower(c.timeUnit) {
	case "week", "weeks":
		o.TimeUnit = 7
	case "day", "days":
		o.TimeUnit = 1
	default:
		return nil, o, nil, usagef("--time-unit %q: want week or day", c.timeUnit)
	}
	if c.model != "" {
		m, ok := modelFlag[strings.ToLower(c.model)]
		if !ok {
			return nil, o, nil, usagef("--model %q: want bgnbd, mbgnbd, paretonbd or auto", c.model)
		}
		o.Model = m
	}
	switch {
	case c.holdoutEnd != "" && c.calEnd == "":
		return nil, o, nil, usagef("--holdout-end needs --calibration-end")
	case c.holdoutEnd != "":
		d, err := parseDate("calibration-end", c.calEnd)
		if err != nil {
			return nil, o, nil, err
		}
		e, err := parseDate("holdout-end", c.holdoutEnd)
		if err != nil {
			return nil, o, nil, err
		}
		if !e.After(d) {
			return nil, o, nil, usagef("--holdout-end %s must be after --calibration-end %s", c.holdoutEnd, c.calEnd)
		}
		o.CalibrationEnd, o.ObservationEnd = d, e
	case c.calEnd != "":
		d, err := parseDate("calibration-end", c.calEnd)
		if err != nil {
			return nil, o, nil, err
		}
		o.ObservationEnd = d
	}
	if c.plot != "" && c.holdoutEnd == "" && o.Model != scoring.Auto {
		return nil, o, nil, usagef("--plot draws the holdout table: it needs --holdout-end (or --model auto)")
	}
	if !(c.horizon > 0) {
		return nil, o, nil, usagef("--horizon %v: want a positive number of weeks", c.horizon)
	}
	o.HorizonDays = c.horizon * 7
	o.AnnualDiscountPercent = c.discount
	o.AtRiskThreshold = c.atRisk
	o.Workers = c.workers
	o.CustomScores = c.scores
	switch c.output {
	case "table", "json":
	default:
		return nil, o, nil, usagef("--output %q: want table or json", c.output)
	}
	delim := c.delimiter
	if strings.EqualFold(delim, "tab") || delim == `\t` {
		delim = "\t"
	}
	if len([]rune(delim)) != 1 {
		return nil, o, nil, usagef("--delimiter %q: want one character", c.delimiter)
	}
	m := source.Mapping{CustomerID: c.customerCol, Timestamp: c.dateCol, Amount: c.amountCol,
		DateLayout: c.layout, MaxRejectedRatio: c.maxRejct}
	r := &source.CSV{Delimiter: []rune(delim)[0]}
	cnt := &counter{}
	st, err := os.Stat(c.csvPath)
	if err != nil {
		return nil, o, nil, err
	}
	cnt.total = st.Size()
	path := c.csvPath
	r.Transactions = func(context.Context) (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		cnt.done = 0
		return &countingReader{f: f, c: cnt}, nil
	}
	if c.customersPath != "" {
		attrs, contact, err := sniffCustomers(c.customersPath, []rune(delim)[0], c.customerCol)
		if err != nil {
			return nil, o, nil, err
		}
		m.Attributes, m.Contact = attrs, contact
		r.Customers = source.FromFile(c.customersPath)
	}
	r.Mapping = m
	o.Clock = scoring.RealClock{}
	return r, o, cnt, nil
}

type counter struct{ done, total int64 }

type countingReader struct {
	f *os.File
	c *counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.c.done += int64(n)
	return n, err
}

func (r *countingReader) Close() error { return r.f.Close() }

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func runScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &scoreCmd{}
	fs := c.flags(stderr)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	r, o, cnt, err := c.options(stderr)
	if err != nil {
		return err
	}
	if c.progress || isTerminal(stderr) {
		o.Progress = stderr
		o.ProgressBytes = func() (int64, int64) { return cnt.done, cnt.total }
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var (
		n         int64
		valueSum  float64
		customSum = map[string]float64{}
	)
	res, err := scoring.Score(ctx, r, o, func(s *customer.Scored) error {
		n++
		valueSum += s.Scores.ExpectedValue
		for k, v := range s.Scores.Custom {
			customSum[k] += v
		}
		return nil
	})
	if err != nil {
		return err
	}
	out := report(res, c.stats)
	for k, v := range customSum {
		put(out, "custom."+k+".mean", v/float64(max(n, 1)))
	}
	if c.plot != "" {
		if err := writePlot(c.plot, res); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if c.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printTable(stdout, res, out, c.stats)
}

// report turns a Result into the object --output json prints: nested
// objects, so `jq .bgnbd.r` or `jq .holdout.bgnbd.mae` reads a value. The
// keys below are written as dotted paths for brevity; put nests them.
func report(res *scoring.Result, stats bool) map[string]any {
	out := map[string]any{
		"customers":      res.Customers,
		"transactions":   res.Transactions,
		"unscored":       res.Unscored,
		"late":           res.Late,
		"rejected":       res.Rejected,
		"triples":        res.Triples,
		"model":          modelKeys[res.Selected],
		"selection":      res.Selection,
		"observationEnd": res.ObservationEnd.Format("2006-01-02"),
		"timeUnitDays":   res.TimeUnit,
	}
	if res.Fallback != "" {
		put(out, "fallback", res.Fallback)
	}
	if !res.CalibrationEnd.IsZero() {
		put(out, "calibrationEnd", res.CalibrationEnd.Format("2006-01-02"))
	}
	// Per model: the calibration fit when the holdout was evaluated (it is
	// the fit the holdout report judges), else the fit on the whole period.
	for _, m := range res.Models {
		key := modelKeys[m.Name]
		if m.Period == scoring.Observation && res.Model(m.Name, scoring.Calibration) != nil {
			continue
		}
		putFit(out, key, &m)
		if h := m.Holdout; h != nil {
			hk := "holdout." + key
			put(out, hk+".mae", h.MAE)
			put(out, hk+".rmse", h.RMSE)
			put(out, hk+".predicted", h.Predicted)
			put(out, hk+".actual", h.Actual)
			put(out, hk+".customers", h.Customers)
			for _, b := range h.Buckets {
				bk := fmt.Sprintf("%s.x%d", hk, b.X)
				put(out, bk+".customers", b.Customers)
				put(out, bk+".actual", b.MeanActual)
				put(out, bk+".predicted", b.MeanPredicted)
			}
		}
	}
	if p := res.Published(); p != nil && p.Period == scoring.Observation && res.Model(p.Name, scoring.Calibration) != nil {
		putFit(out, "published", p)
	}
	sp := res.Spend
	if sp.Fitted {
		for k, v := range sp.Params {
			put(out, "gammaGamma."+k, v)
		}
		put(out, "gammaGamma.logLikelihood", sp.LogLikelihood)
	} else {
		put(out, "gammaGamma.fallback", sp.Fallback)
	}
	put(out, "gammaGamma.customers", sp.Customers)
	put(out, "meanSpend", sp.MeanSpend)
	pop := res.Population
	put(out, "population.active", pop.Active)
	put(out, "population.atRisk", pop.AtRisk)
	put(out, "population.repeatBuyers", pop.RepeatBuyers)
	put(out, "population.retentionBase", pop.RetentionBase)
	put(out, "population.retained", pop.Retained)
	put(out, "population.retentionRate", pop.RetentionRate)
	put(out, "population.totalExpectedValue", pop.TotalExpectedValue)
	for name, is := range res.CustomScores {
		put(out, "custom."+name+".errors", is.Errors+is.NonNumeric+is.NonFinite)
		put(out, "custom."+name+".firstError", is.First)
	}
	if stats {
		d := res.Durations
		for k, v := range map[string]time.Duration{"read": d.Read, "summarize": d.Summarize, "fit": d.Fit,
			"score": d.Score, "rank": d.Rank, "custom": d.Custom, "emit": d.Emit, "total": d.Total} {
			put(out, "durations."+k, v.Seconds())
		}
		put(out, "peakRSSMiB", peakRSSMiB())
		put(out, "rereads", res.Rereads)
	}
	return out
}

func putFit(out map[string]any, key string, m *scoring.FittedModel) {
	if m.Err != "" {
		put(out, key+".error", m.Err)
		return
	}
	for k, v := range m.Params {
		put(out, key+"."+k, v)
	}
	put(out, key+".logLikelihood", m.LogLikelihood)
	put(out, key+".converged", m.Converged)
	put(out, key+".iterations", m.Iterations)
	put(out, key+".period", string(m.Period))
}

// put stores v in out at the dotted path, creating the objects on the
// way: put(out, "bgnbd.r", v) sets out["bgnbd"]["r"]. Every part of a path
// is an identifier (model keys, parameter names, custom score names, which
// scoring checks are identifiers), so splitting at dots is exact.
func put(out map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	m := out
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
}

// peakRSSMiB reads the process's peak resident set (VmHWM) from /proc.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

var paramOrder = map[btyd.ModelName][]string{
	btyd.NameBGNBD: {"r", "alpha", "a", "b"}, btyd.NameMBGNBD: {"r", "alpha", "a", "b"},
	btyd.NameParetoNBD: {"r", "alpha", "s", "beta"},
}

func printTable(w io.Writer, res *scoring.Result, out map[string]any, stats bool) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "customers\t%d\t(transactions %d, rejected rows %d, customers without purchases %d, distinct (x, t_x, T) %d)\n",
		res.Customers, res.Transactions, res.Rejected, res.Unscored, res.Triples)
	period := "observed up to " + res.ObservationEnd.Format("2006-01-02")
	if !res.CalibrationEnd.IsZero() {
		period = fmt.Sprintf("calibration up to %s, holdout to %s", res.CalibrationEnd.Format("2006-01-02"), res.ObservationEnd.Format("2006-01-02"))
	}
	fmt.Fprintf(tw, "period\t%s\t(time unit %g days)\n", period, res.TimeUnit)
	fmt.Fprintf(tw, "model\t%s\t%s\n", res.Selected, res.Selection)
	if res.Fallback != "" {
		fmt.Fprintf(tw, "fallback\t%s\n", res.Fallback)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tperiod\tparameters\tlog-likelihood\tconverged\titerations\tholdout MAE\tRMSE\tpredicted\tactual\t")
	for _, m := range res.Models {
		if m.Err != "" {
			fmt.Fprintf(tw, "%s\t%s\tfailed: %s\t\t\t\t\t\t\t\t\n", m.Name, m.Period, m.Err)
			continue
		}
		var ps []string
		for _, k := range paramOrder[m.Name] {
			ps = append(ps, fmt.Sprintf("%s=%.4g", k, m.Params[k]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%v\t%d\t", m.Name, m.Period, strings.Join(ps, " "), m.LogLikelihood, m.Converged, m.Iterations)
		if h := m.Holdout; h != nil {
			fmt.Fprintf(tw, "%.4f\t%.4f\t%.1f\t%.0f\t\n", h.MAE, h.RMSE, h.Predicted, h.Actual)
		} else {
			fmt.Fprint(tw, "\t\t\t\t\n")
		}
	}
	sp := res.Spend
	if sp.Fitted {
		fmt.Fprintf(tw, "GammaGamma\t\tp=%.4g q=%.4g v=%.4g\t%.2f\t%v\t%d\t\t\t\t\t\n", sp.Params["p"], sp.Params["q"], sp.Params["v"],
			sp.LogLikelihood, sp.Converged, sp.Iterations)
	} else {
		fmt.Fprintf(tw, "GammaGamma\t\tnot used: %s\t\t\t\t\t\t\t\t\n", sp.Fallback)
	}
	tw.Flush()
	// Holdout buckets.
	var hms []scoring.FittedModel
	for _, m := range res.Models {
		if m.Holdout != nil {
			hms = append(hms, m)
		}
	}
	if len(hms) > 0 {
		fmt.Fprintf(w, "\nmean holdout purchases by calibration repeat purchases\n")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "x\tcustomers\tactual\t")
		for _, m := range hms {
			fmt.Fprintf(tw, "%s\t", m.Name)
		}
		fmt.Fprintln(tw)
		for b := 0; b < btyd.HoldoutBuckets; b++ {
			bk := hms[0].Holdout.Buckets[b]
			label := strconv.Itoa(b)
			if b == btyd.HoldoutBuckets-1 {
				label += "+"
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t", label, bk.Customers, bk.MeanActual)
			for _, m := range hms {
				fmt.Fprintf(tw, "%.3f\t", m.Holdout.Buckets[b].MeanPredicted)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	pop := res.Population
	fmt.Fprintf(w, "\npopulation\n")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  active (P(alive) >= threshold)\t%d\n", pop.Active)
	fmt.Fprintf(tw, "  at risk (repeat buyers below it)\t%d\n", pop.AtRisk)
	fmt.Fprintf(tw, "  repeat buyers\t%d\n", pop.RepeatBuyers)
	fmt.Fprintf(tw, "  retention rate\t%.1f%%\t(%d of %d)\n", 100*pop.RetentionRate, pop.Retained, pop.RetentionBase)
	fmt.Fprintf(tw, "  total expected value\t%.2f\n", pop.TotalExpectedValue)
	fmt.Fprintf(tw, "  mean spend per purchase\t%.2f\n", sp.MeanSpend)
	custom, _ := out["custom"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(custom)) {
		fields, _ := custom[name].(map[string]any)
		for _, f := range slices.Sorted(maps.Keys(fields)) {
			fmt.Fprintf(tw, "  custom.%s.%s\t%v\n", name, f, fields[f])
		}
	}
	tw.Flush()
	if stats {
		d := res.Durations
		fmt.Fprintf(w, "\nstage timings (%d transactions)\n", res.Transactions)
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "stage\tseconds\trows/s\t")
		for _, s := range []struct {
			n string
			d time.Duration
		}{{"read+aggregate", d.Read}, {"summarize", d.Summarize}, {"fit", d.Fit}, {"score", d.Score},
			{"rank", d.Rank}, {"custom", d.Custom}, {"emit", d.Emit}, {"total", d.Total}} {
			rate := "-"
			if s.d >= time.Millisecond {
				rate = fmt.Sprintf("%.0f", float64(res.Transactions)/s.d.Seconds())
			}
			fmt.Fprintf(tw, "%s\t%.3f\t%s\t\n", s.n, s.d.Seconds(), rate)
		}
		fmt.Fprintf(tw, "peak RSS MiB\t%.0f\t\t\n", peakRSSMiB())
		tw.Flush()
	}
	return nil
}

// contactNames maps common header names to contact fields.
var contactNames = map[string]string{
	"email": "email", "e_mail": "email", "mail": "email",
	"phone": "phone", "phone_number": "phone", "mobile": "phone",
	"timezone": "timezone", "time_zone": "timezone", "tz": "timezone",
	"locale": "locale", "language": "locale",
	"opt_out": "optout", "optout": "optout", "opted_out": "optout", "unsubscribed": "optout",
}

// sniffCustomers maps a customers file by its header: contact columns by
// their usual names, every other column an attribute typed by its first
// rows (Number when all parse as numbers, Bool when all are booleans,
// String otherwise).
func sniffCustomers(path string, delim rune, idCol string) ([]source.Attribute, source.ContactColumns, error) {
	var cc source.ContactColumns
	f, err := os.Open(path)
	if err != nil {
		return nil, cc, err
	}
	defer f.Close()
	r, err := source.Decompress(f)
	if err != nil {
		return nil, cc, err
	}
	cr := csv.NewReader(r)
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	hdr, err := cr.Read()
	if err != nil {
		return nil, cc, fmt.Errorf("customers file %s: reading the header: %w", path, err)
	}
	if len(hdr) > 0 {
		hdr[0] = strings.TrimPrefix(hdr[0], "\ufeff")
	}
	isNum := make([]bool, len(hdr))
	isBool := make([]bool, len(hdr))
	seen := make([]bool, len(hdr))
	for i := range hdr {
		isNum[i], isBool[i] = true, true
	}
	for n := 0; n < 500; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			continue
		}
		for i, v := range rec {
			if i >= len(hdr) || strings.TrimSpace(v) == "" {
				continue
			}
			seen[i] = true
			if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
				isNum[i] = false
			}
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true", "false", "yes", "no":
			default:
				isBool[i] = false
			}
		}
	}
	var attrs []source.Attribute
	for i, h := range hdr {
		name := strings.TrimSpace(h)
		if name == "" || strings.EqualFold(name, idCol) {
			continue
		}
		switch contactNames[strings.ToLower(name)] {
		case "email":
			cc.Email = h
			continue
		case "phone":
			cc.Phone = h
			continue
		case "timezone":
			cc.Timezone = h
			continue
		case "locale":
			cc.Locale = h
			continue
		case "optout":
			cc.OptOut = h
			continue
		}
		typ := customer.String
		switch {
		case seen[i] && isBool[i]:
			typ = customer.Bool
		case seen[i] && isNum[i]:
			typ = customer.Number
		}
		attrs = append(attrs, source.Attribute{Name: name, Column: h, Type: typ})
	}
	return attrs, cc, nil
}
