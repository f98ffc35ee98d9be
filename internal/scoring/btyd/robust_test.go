package btyd

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// extremeModels returns models over a grid of tiny, moderate and huge parameters.
func extremeModels() []Model {
	vals := []float64{1e-6, 0.05, 1.0000001, 3, 1e6}
	var ms []Model
	for _, r := range vals {
		for _, al := range vals {
			for _, a := range vals {
				for _, b := range []float64{1e-6, 1, 120, 1e6} {
					ms = append(ms, BGNBD{r, al, a, b}, MBGNBD{r, al, a, b}, ParetoNBD{r, al, a, b})
				}
			}
		}
	}
	return ms
}

func TestScoringNeverNaN(t *testing.T) {
	summaries := []struct {
		x     int32
		tx, T float64
	}{{0, 0, 0}, {0, 0, 38}, {1, 0.1, 0.2}, {2, 30.43, 38.86}, {500, 38, 38.86}, {500, 0.5, 100}, {7, 1e-9, 1e4}, {3, 0, 5}}
	horizons := []float64{1e-9, 1, 39, 1e4}
	n := 0
	for _, m := range extremeModels() {
		for _, s := range summaries {
			pa := m.PAlive(s.x, s.tx, s.T)
			if !(pa >= 0 && pa <= 1) {
				t.Errorf("%#v.PAlive(%d,%v,%v) = %v", m, s.x, s.tx, s.T, pa)
			}
			for _, h := range horizons {
				e := m.ExpectedPurchases(h, s.x, s.tx, s.T)
				n++
				if !isFinite(e) || e < 0 {
					t.Errorf("%#v.ExpectedPurchases(%v,%d,%v,%v) = %v", m, h, s.x, s.tx, s.T, e)
				}
			}
		}
		for _, h := range horizons {
			if e := m.ExpectedPurchasesPopulation(h); !isFinite(e) || e < 0 {
				t.Errorf("%#v.ExpectedPurchasesPopulation(%v) = %v", m, h, e)
			}
		}
		if v, err := CustomerLifetimeValue(m, 500, 38, 38.86, 1e3, CLVOptions{}); err != nil || !isFinite(v) || v < 0 {
			t.Errorf("%#v CLV = %v, %v", m, v, err)
		}
	}
	t.Logf("%d conditional expectations checked", n)
	for _, g := range []GammaGamma{{1e-6, 1e-6, 1e-6}, {6.25, 3.74, 15.44}, {1e6, 1e6, 1e6}, {0.5, 1, 1}} {
		for _, x := range []int32{0, 1, 500} {
			for _, mv := range []float64{0, 1e-9, 35, 1e9} {
				if v := g.ExpectedSpend(x, mv); !isFinite(v) || v < 0 {
					t.Errorf("%+v.ExpectedSpend(%d,%v) = %v", g, x, mv, v)
				}
			}
		}
	}
	// Invalid input gives 0, not NaN.
	bg := BGNBD{0.243, 4.414, 0.793, 2.426}
	for _, v := range []float64{bg.PAlive(-1, 0, 1), bg.PAlive(1, 2, 1), bg.ExpectedPurchases(math.NaN(), 1, 0.5, 1),
		bg.ExpectedPurchases(1, 0, 1, 2), BGNBD{-1, 1, 1, 1}.PAlive(1, 0, 1), ParetoNBD{}.ExpectedPurchasesPopulation(1)} {
		if v != 0 {
			t.Errorf("invalid input scored %v, want 0", v)
		}
	}
}

func TestExpectationsAgainstHyp2F1Form(t *testing.T) {
	// bgBracket must equal the textbook form C/(a−1)·[1 − (1−z)^A ₂F₁(A, A+…)],
	// evaluated here with Hyp2F1 directly, away from a = 1 where that form is safe.
	for _, c := range []struct{ r, alpha, a, b, x, T, t float64 }{
		{0.243, 4.414, 0.793, 2.426, 2, 38.86, 39}, {0.5, 6, 2.5, 1.6, 0, 10, 100},
		{2, 0.5, 0.3, 5, 40, 52, 10}, {0.2, 10, 4, 0.4, 0, 0, 39}, {1.5, 3, 1.2, 0.9, 7, 20, 1000},
	} {
		A, B, C := c.r+c.x, c.b+c.x, c.a+c.b+c.x-1
		z := c.t / (c.alpha + c.T + c.t)
		f, err := Hyp2F1(A, B, C, z)
		if err != nil {
			t.Fatal(err)
		}
		want := C / (c.a - 1) * (1 - math.Pow(1-z, A)*f)
		checkRel(t, "bgBracket", bgBracket(A, C, c.a, c.t, c.alpha+c.T), want, 1e-10)
	}
	// Continuity at a = 1, where the textbook form is 0/0.
	m1 := BGNBD{0.5, 5, 1, 2}
	m2 := BGNBD{0.5, 5, 1 + 1e-7, 2}
	checkRel(t, "E at a=1", m1.ExpectedPurchases(39, 3, 20, 30), m2.ExpectedPurchases(39, 3, 20, 30), 1e-6)
	checkRel(t, "E[X] at a=1", m1.ExpectedPurchasesPopulation(39), m2.ExpectedPurchasesPopulation(39), 1e-6)
	// Pareto/NBD at s = 1: continuity of exprel's form.
	p1, p2 := ParetoNBD{0.5, 10, 1, 12}, ParetoNBD{0.5, 10, 1 + 1e-8, 12}
	checkRel(t, "Pareto E at s=1", p1.ExpectedPurchases(39, 2, 30, 38), p2.ExpectedPurchases(39, 2, 30, 38), 1e-6)

	// paretoR against the note's original ₂F₁(r+s+x, s+1; r+s+x+1; ·) form.
	for _, c := range []struct{ r, alpha, s, beta, x, t float64 }{
		{0.55, 10.6, 0.61, 11.7, 2, 30}, {0.55, 20, 0.61, 3, 0, 0}, {2, 1, 0.3, 8, 50, 4},
	} {
		A := c.r + c.s + c.x
		var want float64
		if c.alpha >= c.beta {
			f, _ := Hyp2F1(A, c.s+1, A+1, (c.alpha-c.beta)/(c.alpha+c.t))
			want = f * math.Pow((c.alpha+c.t), -A) / (math.Pow(c.alpha+c.t, -(c.r+c.x)) * math.Pow(c.beta+c.t, -c.s))
		} else {
			f, _ := Hyp2F1(A, c.r+c.x, A+1, (c.beta-c.alpha)/(c.beta+c.t))
			want = f * math.Pow((c.beta+c.t), -A) / (math.Pow(c.alpha+c.t, -(c.r+c.x)) * math.Pow(c.beta+c.t, -c.s))
		}
		got, err := paretoR(c.r, c.alpha, c.s, c.beta, c.x, c.t)
		if err != nil {
			t.Fatal(err)
		}
		checkRel(t, "paretoR", got, want, 1e-12)
	}
}

func TestDegenerateData(t *testing.T) {
	ctx := context.Background()
	fit := func(tr []Triple) error {
		d, err := NewData(tr)
		if err != nil {
			return err
		}
		for _, n := range []ModelName{NameBGNBD, NameMBGNBD, NameParetoNBD} {
			m, _, err2 := Fit(ctx, n, d, FitOptions{})
			if err2 == nil {
				t.Errorf("%s fitted degenerate data %v: %v", n, tr, m)
			}
			if m != nil {
				t.Errorf("%s returned a model with an error", n)
			}
			err = err2
		}
		return err
	}
	for _, c := range []struct {
		tr   []Triple
		want error
	}{
		{nil, ErrDegenerate},
		{[]Triple{{0, 0, 10, 100}, {0, 0, 5, 3}}, ErrNoRepeatBuyers},
		{[]Triple{{2, 3, 5, 1}}, ErrDegenerate},
		{[]Triple{{1, 0, 0, 5}, {0, 0, 0, 3}}, ErrDegenerate},
		{[]Triple{{1, 6, 5, 1}}, ErrInvalidInput},
		{[]Triple{{0, 1, 5, 1}}, ErrInvalidInput},
		{[]Triple{{1, 1, 5, -1}}, ErrInvalidInput},
	} {
		if err := fit(c.tr); !errors.Is(err, c.want) {
			t.Errorf("%v: error %v, want %v", c.tr, err, c.want)
		}
	}
	if _, _, err := Fit(ctx, "Nope", nil, FitOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("unknown model: %v", err)
	}
	for _, c := range []struct {
		s    []Spend
		want error
	}{
		{[]Spend{{0, 10, 1}}, ErrDegenerate},
		{[]Spend{{1, 0, 1}, {2, 5, 1}}, ErrDegenerate},
		{[]Spend{{1, 20, 50}, {3, 20, 10}, {2, 20, 7}}, ErrNotIdentifiable},
		{[]Spend{{1, math.NaN(), 1}}, ErrInvalidInput},
	} {
		if _, err := NewSpendData(c.s); !errors.Is(err, c.want) {
			t.Errorf("%v: error %v, want %v", c.s, err, c.want)
		}
	}
}

func TestGammaGammaRidge(t *testing.T) {
	// Every customer spends nearly the same on every purchase: the
	// likelihood rises along q, v → ∞ and the fit must say so, not return
	// meaningless parameters.
	rng := rand.New(rand.NewPCG(3, 3))
	var s []Spend
	for i := 0; i < 2000; i++ {
		x := int32(1 + rng.IntN(5))
		var sum float64
		for j := int32(0); j < x; j++ {
			sum += 20 * (1 + 1e-3*rng.NormFloat64())
		}
		s = append(s, Spend{x, sum / float64(x), 1})
	}
	sd, err := NewSpendData(s)
	if err != nil {
		t.Fatal(err)
	}
	m, res, err := FitGammaGamma(context.Background(), sd, FitOptions{})
	if !errors.Is(err, ErrNotIdentifiable) {
		t.Fatalf("fit on constant spend: %+v %+v, error %v; want ErrNotIdentifiable", m, res, err)
	}
	t.Logf("%v (%+v)", err, res)
}

func TestCompressorMerge(t *testing.T) {
	a, b, all := NewCompressor(), NewCompressor(), NewCompressor()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		T := float64(rng.IntN(50)) / 7
		x, tx := Summarize(SimulateBGNBD(rng, cdnowTruth, T), 1.0/7)
		c := a
		if i%3 == 0 {
			c = b
		}
		if err := c.Add(x, tx, T); err != nil {
			t.Fatal(err)
		}
		_ = all.Add(x, tx, T)
	}
	a.Merge(b)
	da, _ := a.Data()
	dall, _ := all.Data()
	if len(da.Triples) != len(dall.Triples) || da.Customers() != 5000 {
		t.Fatalf("merged %d triples / %v customers, want %d / 5000", len(da.Triples), da.Customers(), len(dall.Triples))
	}
	for i := range da.Triples {
		if da.Triples[i] != dall.Triples[i] {
			t.Fatalf("triple %d: %+v != %+v", i, da.Triples[i], dall.Triples[i])
		}
	}
	if err := a.Add(1, math.NaN(), 3); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NaN t_x accepted: %v", err)
	}
}

func TestCLV(t *testing.T) {
	m := BGNBD{0.243, 4.414, 0.793, 2.426}
	// Without discounting the periods telescope to spend·E[Y(n·u)].
	v, err := CustomerLifetimeValue(m, 2, 30.43, 38.86, 35, CLVOptions{Periods: 9, UnitsPerPeriod: 4.345, DiscountRate: 1e-300})
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "undiscounted CLV", v, 35*m.ExpectedPurchases(9*4.345, 2, 30.43, 38.86), 1e-12)
	// Discounting: the lifetimes loop, written out.
	var want, prev float64
	for i := 1; i <= 12; i++ {
		cum := m.ExpectedPurchases(float64(i)*4.345, 2, 30.43, 38.86)
		want += 35 * (cum - prev) / math.Pow(1.01, float64(i))
		prev = cum
	}
	v, _ = CustomerLifetimeValue(m, 2, 30.43, 38.86, 35, CLVOptions{})
	checkRel(t, "CLV", v, want, 1e-12)
	if _, err := CustomerLifetimeValue(m, 2, 30.43, 38.86, -1, CLVOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("negative spend: %v", err)
	}
}
