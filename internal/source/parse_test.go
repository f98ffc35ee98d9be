package source

import (
	"testing"
	"time"
)

var sinkF float64
var sinkB bool

func BenchmarkParseDecimal(b *testing.B) {
	in := [][]byte{[]byte("23.50"), []byte("101.07"), []byte("7.99"), []byte("150.00")}
	for i := 0; i < b.N; i++ {
		f, ok := parseDecimal(in[i&3], '.')
		sinkF += f
		sinkB = ok
	}
}

func BenchmarkParseStampCompact(b *testing.B) {
	p, _ := Mapping{DateLayout: "20060102"}.compile()
	in := [][]byte{[]byte("20240131"), []byte("20230228"), []byte("20221015"), []byte("20240229")}
	var st stamp
	for i := 0; i < b.N; i++ {
		ok := p.parseStamp(in[i&3], false, &st)
		sinkF += float64(p.day(&st))
		sinkB = ok
	}
}

func TestParseCompactAll(t *testing.T) {
	for y := int32(0); y <= 9999; y += 7 {
		for m := int32(0); m <= 13; m++ {
			for d := int32(0); d <= 32; d++ {
				b := []byte{byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10),
					byte('0' + m/10), byte('0' + m%10), byte('0' + d/10), byte('0' + d%10)}
				var s stamp
				ok := parseCompact(b, &s)
				want := m >= 1 && m <= 12 && d >= 1 && d <= daysIn(m, y)
				if ok != want || ok && (s.year != y || s.month != m || s.day != d) {
					t.Fatalf("%s: ok=%v %+v", b, ok, s)
				}
			}
		}
	}
	for _, bad := range []string{"2024013a", "2024/131", "20240:31", "2024013\\x00", " 2024013"} {
		var s stamp
		if parseCompact([]byte(bad), &s) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDaysFromCivil(t *testing.T) {
	for y := int32(0); y <= 9999; y++ {
		for m := int32(1); m <= 12; m++ {
			for _, d := range []int32{1, 15, daysIn(m, y)} {
				want := time.Date(int(y), time.Month(m), int(d), 0, 0, 0, 0, time.UTC).Unix() / 86400
				if y < 1970 && time.Date(int(y), time.Month(m), int(d), 0, 0, 0, 0, time.UTC).Unix()%86400 != 0 {
					want--
				}
				if got := daysFromCivil(y, m, d); got != want {
					t.Fatalf("%04d-%02d-%02d: %d, want %d", y, m, d, got, want)
				}
			}
		}
	}
}

func TestSetDateTable(t *testing.T) {
	for y := int32(1850); y <= 2250; y++ {
		for m := int32(0); m <= 13; m++ {
			for d := int32(0); d <= 32; d++ {
				var s stamp
				ok := s.setDate(y, m, d)
				want := m >= 1 && m <= 12 && d >= 1 && d <= daysIn(m, y)
				if ok != want || ok && s.days != daysFromCivil(y, m, d) {
					t.Fatalf("%d-%d-%d: ok=%v days=%d want %d", y, m, d, ok, s.days, daysFromCivil(y, m, d))
				}
			}
		}
	}
}
