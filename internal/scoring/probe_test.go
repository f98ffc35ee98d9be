package scoring

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

func TestProbeGG(t *testing.T) {
	if os.Getenv("SCORING_BENCH_CSV") == "" {
		t.Skip()
	}
	b := &testing.B{}
	_ = b
	p, _ := benchOptions().compile()
	j := newJob(p, nil)
	if err := j.read(context.Background(), benchReader(benchData())); err != nil {
		t.Fatal(err)
	}
	if err := j.summarize(); err != nil {
		t.Fatal(err)
	}
	sp := j.m.spends
	run := func(name string, s []btyd.Spend, o btyd.FitOptions) {
		t0 := time.Now()
		sd, err := btyd.NewSpendData(s)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		gg, fr, err := btyd.FitGammaGamma(context.Background(), sd, o)
		t.Logf("%s: newdata %v fit %v: %+v %+v %v", name, t1.Sub(t0), time.Since(t1), gg, fr, err)
	}
	run("sorted", sp, btyd.FitOptions{})
	sh := slices.Clone(sp)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(sh), func(i, k int) { sh[i], sh[k] = sh[k], sh[i] })
	run("shuffled", sh, btyd.FitOptions{})
	run("sorted tol 1e-6", sp, btyd.FitOptions{GradTol: 1e-6})
	t0 := time.Now()
	d, err := btyd.NewData(j.m.triples)
	t.Logf("NewData %v %v", time.Since(t0), err)
	t0 = time.Now()
	_, fr, err := btyd.FitBGNBD(context.Background(), d, btyd.FitOptions{})
	t.Logf("FitBGNBD %v %+v %v", time.Since(t0), fr, err)
	t0 = time.Now()
	_, fr, err = btyd.FitParetoNBD(context.Background(), d, btyd.FitOptions{})
	t.Logf("FitPareto %v %+v %v", time.Since(t0), fr, err)
	t0 = time.Now()
	_, fr, err = btyd.FitMBGNBD(context.Background(), d, btyd.FitOptions{})
	t.Logf("FitMBG %v %+v %v", time.Since(t0), fr, err)
}
