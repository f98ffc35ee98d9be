package cli

import (
	"flag"
	"fmt"
	"io"
)

// Generate runs `retention-operator generate`: synthetic customers drawn
// from BG/NBD and Gamma-Gamma (see Synthesize), written as a transactions
// CSV (customer_id,date,amount; gzipped when the name ends in .gz) and,
// optionally, a customers CSV with attributes. The same seed gives the
// same bytes.
func Generate(args []string, stdout, stderr io.Writer) int {
	return exit("generate", stderr, runGenerate(args, stdout, stderr))
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	o := DefaultSynth()
	var start, end, txPath, custPath string
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed; the same seed writes the same bytes")
	fs.IntVar(&o.Customers, "customers", o.Customers, "number of customers `N`")
	fs.StringVar(&start, "start", o.Start.Format("2006-01-02"), "first purchase `date` (YYYY-MM-DD)")
	fs.StringVar(&end, "end", o.End.Format("2006-01-02"), "last purchase `date` (YYYY-MM-DD)")
	fs.StringVar(&txPath, "transactions", "", "transactions CSV `file` to write (gzipped when it ends in .gz); required")
	fs.StringVar(&custPath, "customers-file", "", "customers CSV `file` to write: first_name, email, timezone, locale, opt_out, complaints, satisfaction, referral_source, discount_share, cost_to_serve")
	fs.Float64Var(&o.R, "r", o.R, "BG/NBD r: shape of the purchase rate (per week)")
	fs.Float64Var(&o.Alpha, "alpha", o.Alpha, "BG/NBD alpha: rate of the purchase rate (weeks)")
	fs.Float64Var(&o.A, "a", o.A, "BG/NBD a: drop-out probability ~ Beta(a, b)")
	fs.Float64Var(&o.B, "b", o.B, "BG/NBD b")
	fs.Float64Var(&o.P, "p", o.P, "Gamma-Gamma p: shape of a purchase's value")
	fs.Float64Var(&o.Q, "q", o.Q, "Gamma-Gamma q: shape of the customer's spend rate")
	fs.Float64Var(&o.V, "v", o.V, "Gamma-Gamma v: rate of the customer's spend rate")
	fs.Float64Var(&o.Split, "split", o.Split, "share of purchase days recorded as two rows")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: retention-operator generate --transactions FILE [flags]\n\nWrites synthetic customers: first purchases uniform over [start, end], then\npurchases and drop-out per BG/NBD, values per Gamma-Gamma (CDNOW-like defaults).\n\nflags:\n")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if txPath == "" {
		return usagef("--transactions is required")
	}
	var err error
	if o.Start, err = parseDate("start", start); err != nil {
		return err
	}
	if o.End, err = parseDate("end", end); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return usagef("%v", err)
	}
	tx, closeTx, err := createOutput(txPath)
	if err != nil {
		return err
	}
	var cust io.Writer
	closeCust := func() error { return nil }
	if custPath != "" {
		if cust, closeCust, err = createOutput(custPath); err != nil {
			closeTx()
			return err
		}
	}
	st, err := Synthesize(o, tx, cust)
	if cerr := closeTx(); err == nil {
		err = cerr
	}
	if cerr := closeCust(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d transactions (%d purchase days) of %d customers to %s", st.Transactions, st.PurchaseDays, st.Customers, txPath)
	if custPath != "" {
		fmt.Fprintf(stdout, ", customers to %s", custPath)
	}
	fmt.Fprintln(stdout)
	return nil
}
