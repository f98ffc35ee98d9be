package btyd
import ("testing";"math")
func spOld(d float64) (float64, float64) {
	e := math.Exp(-math.Abs(d))
	var l float64
	if e < 1e-4 { l = e * (1 - e*(0.5-e/3)) } else { l = math.Log(1 + e) }
	inv := 1 / (1 + e)
	if d >= 0 { return d + l, inv }
	return l, e * inv
}
func spMix(d float64) (float64, float64) {
	e := math.Exp(-math.Abs(d))
	var l float64
	if e < 1e-4 { l = e * (1 - e*(0.5-e/3)) } else { l = log1pUnit(e) }
	inv := 1 / (1 + e)
	if d >= 0 { return d + l, inv }
	return l, e * inv
}
func BenchmarkSP(b *testing.B) {
	d := benchData(b)
	e := newBGEval(d, false, 1)
	theta, g := []float64{-1.4, 1.5, -0.2, 0.9}, make([]float64, 4)
	e.negLL(theta, g)
	ds := make([]float64, 0, len(d.tri))
	big := 0
	for _, tr := range d.tri {
		if e.xf[tr.xi] == 0 { continue }
		T, t := e.tt[tr.ti], e.tt[tr.txi]
		v := e.lnD[tr.xi] + (0.25+e.xf[tr.xi])*(T.lnA-t.lnA)
		ds = append(ds, v)
		if math.Abs(v) > 9.2 { big++ }
	}
	b.Logf("%d softplus args, %d with |d| > 9.2", len(ds), big)
	for _, c := range []struct{ n string; f func(float64) (float64, float64) }{{"mix", spMix}, {"old", spOld}, {"new", softplus}, {"mix2", spMix}} {
		b.Run(c.n, func(b *testing.B) {
			var s float64
			for range b.N { for _, v := range ds { x, y := c.f(v); s += x + y } }
			_ = s
		})
	}
}
