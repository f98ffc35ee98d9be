package scoring

import (
	"testing"
	"time"
	"math/rand/v2"

	"github.com/google/cel-go/cel"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

func TestProbe(t *testing.T) {
	m := btyd.BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	n := 100000
	t0 := time.Now()
	s := 0.0
	for i := 0; i < n; i++ {
		x := int32(i % 50)
		T := 10 + float64(i%1000)/7
		s += m.ExpectedPurchases(52, x, T*0.5, T)
	}
	t.Logf("bgnbd E: %v per call (%v)", time.Since(t0)/time.Duration(n), s)
	t0 = time.Now()
	for i := 0; i < n; i++ {
		x := int32(i % 50)
		T := 10 + float64(i%1000)/7
		s += m.PAlive(x, T*0.5, T)
	}
	t.Logf("bgnbd P: %v per call", time.Since(t0)/time.Duration(n))
	p := btyd.ParetoNBD{R: 0.55, Alpha: 10.58, S: 0.61, Beta: 11.67}
	t0 = time.Now()
	for i := 0; i < n; i++ {
		x := int32(i % 50)
		T := 10 + float64(i%1000)/7
		s += p.ExpectedPurchases(52, x, T*0.5, T)
	}
	t.Logf("pareto E: %v per call", time.Since(t0)/time.Duration(n))
	// factorisation
	for _, mm := range []btyd.Model{m, btyd.MBGNBD{R: 0.52, Alpha: 6.18, A: 0.89, B: 1.61}, p} {
		for _, c := range [][3]float64{{0, 0, 30}, {2, 30.43, 38.86}, {10, 5, 70}, {40, 60, 61}} {
			x := int32(c[0])
			e := mm.ExpectedPurchases(52, x, c[1], c[2])
			f := mm.PAlive(x, c[1], c[2]) * mm.ExpectedPurchases(52, x, c[2], c[2]) / mm.PAlive(x, c[2], c[2])
			t.Logf("%s %v: %v %v rel %g", mm.Name(), c, e, f, (e-f)/e)
		}
	}
	// population: expected purchases with T uniform over W weeks
	for _, W := range []float64{104, 156, 208} {
		for _, alpha := range []float64{4.414, 1.5, 1.0, 0.6} {
		for _, b := range []float64{2.426, 6, 12} {
			mm := btyd.BGNBD{R: 0.243, Alpha: alpha, A: 0.793, B: b}
			tot := 0.0
			for k := 0; k < 200; k++ {
				tot += 1 + mm.ExpectedPurchasesPopulation(W*(float64(k)+0.5)/200)
			}
			t.Logf("W=%v alpha=%v b=%v: mean purchase occasions %.2f", W, alpha, b, tot/200)
		}}
	}
	_ = rand.N[int]
	env, err := cel.NewEnv(cel.Variable("customer.pAlive", cel.DoubleType), cel.Variable("customer.frequency", cel.IntType))
	if err != nil { t.Fatal(err) }
	ast, iss := env.Compile("customer.pAlive * 2.0 + double(customer.frequency)")
	if iss.Err() != nil { t.Fatal(iss.Err()) }
	t.Log(ast.OutputType())
	prg, err := env.Program(ast, cel.CostLimit(100))
	if err != nil { t.Fatal(err) }
	out, _, err := prg.Eval(map[string]any{"customer.pAlive": 0.5, "customer.frequency": 3})
	t.Log(out, err)
}
