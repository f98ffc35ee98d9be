package cli

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"

	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// The holdout plot: mean holdout purchases by calibration repeat purchases
// 0..7+, actual against each model's prediction, as lines with markers.
// It is drawn with image/png and a 5×7 bitmap font of our own
// (golang.org/x/image's basicfont is not a dependency of the module).

var (
	white     = color.RGBA{255, 255, 255, 255}
	black     = color.RGBA{0, 0, 0, 255}
	grey      = color.RGBA{200, 200, 200, 255}
	darkGrey  = color.RGBA{90, 90, 90, 255}
	modelInks = map[btyd.ModelName]color.RGBA{
		btyd.NameBGNBD:     {31, 119, 180, 255},
		btyd.NameMBGNBD:    {44, 160, 44, 255},
		btyd.NameParetoNBD: {214, 39, 40, 255},
	}
)

// canvas is an RGBA image with a few drawing primitives.
type canvas struct{ *image.RGBA }

func (c canvas) rect(x0, y0, x1, y1 int, ink color.RGBA) {
	for y := max(y0, 0); y < min(y1, c.Rect.Dy()); y++ {
		for x := max(x0, 0); x < min(x1, c.Rect.Dx()); x++ {
			c.SetRGBA(x, y, ink)
		}
	}
}

// line draws a line of width w (dashed when dash > 0: dash pixels on, dash off).
func (c canvas) line(x0, y0, x1, y1, w, dash int, ink color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for n := 0; ; n++ {
		if dash == 0 || (n/dash)%2 == 0 {
			c.rect(x0-w/2, y0-w/2, x0-w/2+w, y0-w/2+w, ink)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// text draws s with its top-left corner at (x, y), each font pixel s×s.
func (c canvas) text(x, y, scale int, s string, ink color.RGBA) {
	for _, r := range s {
		g := glyph(r)
		for col := 0; col < 5; col++ {
			for row := 0; row < 7; row++ {
				if g[col]>>row&1 != 0 {
					c.rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale, ink)
				}
			}
		}
		x += 6 * scale
	}
}

// textUp draws s reading upwards, starting at (x, y) (its bottom-left).
func (c canvas) textUp(x, y, scale int, s string, ink color.RGBA) {
	for _, r := range s {
		g := glyph(r)
		for col := 0; col < 5; col++ {
			for row := 0; row < 7; row++ {
				if g[col]>>row&1 != 0 {
					px, py := x+row*scale, y-(col+1)*scale
					c.rect(px, py, px+scale, py+scale, ink)
				}
			}
		}
		y -= 6 * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

// writePlot draws the holdout table of every model that has one.
func writePlot(path string, res *scoring.Result) error {
	var ms []scoring.FittedModel
	for _, m := range res.Models {
		if m.Holdout != nil {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return errors.New("no holdout report to plot (no model could be fitted on the calibration period)")
	}
	const W, H = 1060, 600
	const left, right, top, bottom = 90, 350, 70, 80
	c := canvas{image.NewRGBA(image.Rect(0, 0, W, H))}
	c.rect(0, 0, W, H, white)
	ymax := 0.0
	for _, m := range ms {
		for _, b := range m.Holdout.Buckets {
			ymax = math.Max(ymax, math.Max(b.MeanActual, b.MeanPredicted))
		}
	}
	step := niceStep(ymax / 5)
	ytop := math.Max(step, math.Ceil(ymax*1.05/step)*step)
	pw, ph := W-left-right, H-top-bottom
	px := func(b int) int { return left + int(float64(pw)*(float64(b)+0.5)/btyd.HoldoutBuckets) }
	py := func(v float64) int { return top + ph - int(math.Round(float64(ph)*v/ytop)) }
	// Grid, ticks and labels.
	for v := 0.0; v <= ytop+step/2; v += step {
		y := py(v)
		c.line(left, y, left+pw, y, 1, 0, grey)
		l := trimFloat(v)
		c.text(left-10-textWidth(l, 2), y-7, 2, l, darkGrey)
	}
	for b := 0; b < btyd.HoldoutBuckets; b++ {
		l := fmt.Sprint(b)
		if b == btyd.HoldoutBuckets-1 {
			l += "+"
		}
		c.text(px(b)-textWidth(l, 2)/2, top+ph+10, 2, l, darkGrey)
	}
	c.line(left, top, left, top+ph, 2, 0, black)
	c.line(left, top+ph, left+pw, top+ph, 2, 0, black)
	xl := "repeat purchases in the calibration period (x)"
	c.text(left+pw/2-textWidth(xl, 2)/2, top+ph+40, 2, xl, black)
	yl := "mean purchases in the holdout"
	c.textUp(20, top+ph/2+textWidth(yl, 2)/2, 2, yl, black)
	title := fmt.Sprintf("holdout %s to %s: actual vs predicted", res.CalibrationEnd.AddDate(0, 0, 1).Format("2006-01-02"),
		res.ObservationEnd.Format("2006-01-02"))
	c.text(left, 25, 2, title, black)
	// Series: actual (black, solid), each model (coloured, dashed).
	series := func(vals func(b int) float64, ink color.RGBA, dash int) {
		for b := 0; b < btyd.HoldoutBuckets; b++ {
			x, y := px(b), py(vals(b))
			if b > 0 {
				c.line(px(b-1), py(vals(b-1)), x, y, 3, dash, ink)
			}
			c.rect(x-5, y-5, x+5, y+5, ink)
		}
	}
	ly := top + 10
	legend := func(name string, ink color.RGBA, dash int) {
		x := left + pw + 20
		c.line(x, ly+7, x+40, ly+7, 3, dash, ink)
		c.rect(x+15, ly+2, x+25, ly+12, ink)
		c.text(x+50, ly, 2, name, black)
		ly += 30
	}
	for _, m := range ms {
		h := m.Holdout
		ink := modelInks[m.Name]
		series(func(b int) float64 { return h.Buckets[b].MeanPredicted }, ink, 8)
		legend(fmt.Sprintf("%s (MAE %.3f)", m.Name, h.MAE), ink, 8)
	}
	act := ms[0].Holdout
	series(func(b int) float64 { return act.Buckets[b].MeanActual }, black, 0)
	legend("actual", black, 0)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.RGBA); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(s float64) float64 {
	if !(s > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(s)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= s {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

// glyph returns the 5×7 bitmap of r: five columns, bit 0 the top row (the
// classic HD44780-style font). Unknown runes draw as '?'.
func glyph(r rune) [5]byte {
	if g, ok := font5x7[r]; ok {
		return g
	}
	return font5x7['?']
}

var font5x7 = map[rune][5]byte{
	' ': {0x00, 0x00, 0x00, 0x00, 0x00}, '?': {0x02, 0x01, 0x51, 0x09, 0x06},
	'%': {0x23, 0x13, 0x08, 0x64, 0x62}, '\'': {0x00, 0x05, 0x03, 0x00, 0x00},
	'(': {0x00, 0x1C, 0x22, 0x41, 0x00}, ')': {0x00, 0x41, 0x22, 0x1C, 0x00},
	'*': {0x14, 0x08, 0x3E, 0x08, 0x14}, '+': {0x08, 0x08, 0x3E, 0x08, 0x08},
	',': {0x00, 0x50, 0x30, 0x00, 0x00}, '-': {0x08, 0x08, 0x08, 0x08, 0x08},
	'.': {0x00, 0x60, 0x60, 0x00, 0x00}, '/': {0x20, 0x10, 0x08, 0x04, 0x02},
	'0': {0x3E, 0x51, 0x49, 0x45, 0x3E}, '1': {0x00, 0x42, 0x7F, 0x40, 0x00},
	'2': {0x42, 0x61, 0x51, 0x49, 0x46}, '3': {0x21, 0x41, 0x45, 0x4B, 0x31},
	'4': {0x18, 0x14, 0x12, 0x7F, 0x10}, '5': {0x27, 0x45, 0x45, 0x45, 0x39},
	'6': {0x3C, 0x4A, 0x49, 0x49, 0x30}, '7': {0x01, 0x71, 0x09, 0x05, 0x03},
	'8': {0x36, 0x49, 0x49, 0x49, 0x36}, '9': {0x06, 0x49, 0x49, 0x29, 0x1E},
	':': {0x00, 0x36, 0x36, 0x00, 0x00}, '=': {0x14, 0x14, 0x14, 0x14, 0x14},
	'<': {0x08, 0x14, 0x22, 0x41, 0x00}, '>': {0x00, 0x41, 0x22, 0x14, 0x08},
	'[': {0x00, 0x7F, 0x41, 0x41, 0x00}, ']': {0x00, 0x41, 0x41, 0x7F, 0x00},
	'_': {0x40, 0x40, 0x40, 0x40, 0x40}, '|': {0x00, 0x00, 0x7F, 0x00, 0x00},
	'A': {0x7E, 0x11, 0x11, 0x11, 0x7E}, 'B': {0x7F, 0x49, 0x49, 0x49, 0x36},
	'C': {0x3E, 0x41, 0x41, 0x41, 0x22}, 'D': {0x7F, 0x41, 0x41, 0x22, 0x1C},
	'E': {0x7F, 0x49, 0x49, 0x49, 0x41}, 'F': {0x7F, 0x09, 0x09, 0x09, 0x01},
	'G': {0x3E, 0x41, 0x49, 0x49, 0x7A}, 'H': {0x7F, 0x08, 0x08, 0x08, 0x7F},
	'I': {0x00, 0x41, 0x7F, 0x41, 0x00}, 'J': {0x20, 0x40, 0x41, 0x3F, 0x01},
	'K': {0x7F, 0x08, 0x14, 0x22, 0x41}, 'L': {0x7F, 0x40, 0x40, 0x40, 0x40},
	'M': {0x7F, 0x02, 0x0C, 0x02, 0x7F}, 'N': {0x7F, 0x04, 0x08, 0x10, 0x7F},
	'O': {0x3E, 0x41, 0x41, 0x41, 0x3E}, 'P': {0x7F, 0x09, 0x09, 0x09, 0x06},
	'Q': {0x3E, 0x41, 0x51, 0x21, 0x5E}, 'R': {0x7F, 0x09, 0x19, 0x29, 0x46},
	'S': {0x46, 0x49, 0x49, 0x49, 0x31}, 'T': {0x01, 0x01, 0x7F, 0x01, 0x01},
	'U': {0x3F, 0x40, 0x40, 0x40, 0x3F}, 'V': {0x1F, 0x20, 0x40, 0x20, 0x1F},
	'W': {0x3F, 0x40, 0x38, 0x40, 0x3F}, 'X': {0x63, 0x14, 0x08, 0x14, 0x63},
	'Y': {0x07, 0x08, 0x70, 0x08, 0x07}, 'Z': {0x61, 0x51, 0x49, 0x45, 0x43},
	'a': {0x20, 0x54, 0x54, 0x54, 0x78}, 'b': {0x7F, 0x48, 0x44, 0x44, 0x38},
	'c': {0x38, 0x44, 0x44, 0x44, 0x20}, 'd': {0x38, 0x44, 0x44, 0x48, 0x7F},
	'e': {0x38, 0x54, 0x54, 0x54, 0x18}, 'f': {0x08, 0x7E, 0x09, 0x01, 0x02},
	'g': {0x0C, 0x52, 0x52, 0x52, 0x3E}, 'h': {0x7F, 0x08, 0x04, 0x04, 0x78},
	'i': {0x00, 0x44, 0x7D, 0x40, 0x00}, 'j': {0x20, 0x40, 0x44, 0x3D, 0x00},
	'k': {0x7F, 0x10, 0x28, 0x44, 0x00}, 'l': {0x00, 0x41, 0x7F, 0x40, 0x00},
	'm': {0x7C, 0x04, 0x18, 0x04, 0x78}, 'n': {0x7C, 0x08, 0x04, 0x04, 0x78},
	'o': {0x38, 0x44, 0x44, 0x44, 0x38}, 'p': {0x7C, 0x14, 0x14, 0x14, 0x08},
	'q': {0x08, 0x14, 0x14, 0x18, 0x7C}, 'r': {0x7C, 0x08, 0x04, 0x04, 0x08},
	's': {0x48, 0x54, 0x54, 0x54, 0x20}, 't': {0x04, 0x3F, 0x44, 0x40, 0x20},
	'u': {0x3C, 0x40, 0x40, 0x20, 0x7C}, 'v': {0x1C, 0x20, 0x40, 0x20, 0x1C},
	'w': {0x3C, 0x40, 0x30, 0x40, 0x3C}, 'x': {0x44, 0x28, 0x10, 0x28, 0x44},
	'y': {0x0C, 0x50, 0x50, 0x50, 0x3C}, 'z': {0x44, 0x64, 0x54, 0x4C, 0x44},
}
