package source

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Byte-level value parsers. None of them allocates on success, and none of
// them returns (or keeps) the value it was given.

// unsafeString views b as a string without copying. Only for calls that do
// not retain the string (strconv.ParseFloat, time.ParseInLocation whose
// result is reduced to numbers).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// trimSpace drops ASCII spaces and tabs around b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// stamp is a parsed date or date-time.
type stamp struct {
	year, month, day     int32
	hour, minute, second int32
	nsec                 int32
	days                 int64 // civil date as days since 1970-01-01
	hasOffset            bool
	offset               int32 // seconds east of UTC
}

func (s *stamp) secOfDay() int64 { return int64(s.hour)*3600 + int64(s.minute)*60 + int64(s.second) }

// unix is the instant, for stamps with an offset.
func (s *stamp) unix() int64 { return s.days*86400 + s.secOfDay() - int64(s.offset) }

func digits2(b []byte) (int32, bool) {
	d0, d1 := b[0]-'0', b[1]-'0'
	if d0 > 9 || d1 > 9 {
		return 0, false
	}
	return int32(d0)*10 + int32(d1), true
}

func digits4(b []byte) (int32, bool) {
	hi, ok1 := digits2(b)
	lo, ok2 := digits2(b[2:])
	return hi*100 + lo, ok1 && ok2
}

func isLeap(y int32) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(m, y int32) int32 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// marchDays is the day of the year, counted from March 1, of the 1st of
// each month (index 1..12).
var marchDays = [13]uint32{0, 306, 337, 0, 31, 61, 92, 122, 153, 184, 214, 245, 275}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with a year in 0..9999 (H. Hinnant's days_from_civil with the year
// shifted by 400 so that unsigned division by constants applies).
func daysFromCivil(y, m, d int32) int64 {
	Y := uint32(y + 400)
	if m <= 2 {
		Y--
	}
	doe := 365*Y + Y/4 - Y/100 + Y/400 + marchDays[m&15%13] + uint32(d) - 1
	return int64(doe) - (719468 + 146097)
}

// Years tableFirst..tableFirst+len(yearTable)-1 are looked up: the day
// of January 1 (days since 1970-01-01) shifted left by one, leap flag in bit 0.
const tableFirst = 1900

var yearTable = func() (t [300]int32) {
	for i := range t {
		y := int32(tableFirst + i)
		v := int32(daysFromCivil(y, 1, 1)) << 1
		if isLeap(y) {
			v |= 1
		}
		t[i] = v
	}
	return t
}()

// monthStart is the day of the year of the 1st of each month (index 1..12),
// in common years and in leap years.
var monthStart = [2][16]int32{
	{0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334},
	{0, 0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335},
}

func (s *stamp) setDate(y, m, d int32) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	if i := uint32(y - tableFirst); i < uint32(len(yearTable)) {
		v := yearTable[i]
		leap := v & 1
		if d > 28 && d > daysIn(m, y) {
			return false
		}
		s.year, s.month, s.day = y, m, d
		s.days = int64(v>>1 + monthStart[leap][m&15] + d - 1)
		return true
	}
	if d > daysIn(m, y) {
		return false
	}
	s.year, s.month, s.day = y, m, d
	s.days = daysFromCivil(y, m, d)
	return true
}

// validText checks that b is UTF-8 without NUL bytes (which the store
// refuses), with a shortcut for short ASCII ids.
func validText(b []byte) bool {
	if n := len(b); n >= 8 && n <= 16 {
		lo, hi := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[n-8:])
		if (lo|hi)&0x8080808080808080 == 0 {
			return zeroBytes(lo)|zeroBytes(hi) == 0
		}
	}
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// parseCompact parses YYYYMMDD, eight digits checked and combined at once
// (SWAR).
func parseCompact(b []byte, s *stamp) bool {
	if len(b) != 8 {
		return false
	}
	x := binary.LittleEndian.Uint64(b)
	v := x - 0x3030303030303030
	// Every byte must be '0'..'9': high nibble 3, and adding 6 must not carry out of the nibble.
	if x&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 || (x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 {
		return false
	}
	// Pairs of digits, then pairs of pairs: bytes are in text order, least significant byte first.
	v = (v*10 + v>>8) & 0x00FF00FF00FF00FF // YY YY MM DD as 2-digit numbers
	y := int32(v&0xFF)*100 + int32(v>>16&0xFF)
	m := int32(v >> 32 & 0xFF)
	d := int32(v >> 48 & 0xFF)
	return s.setDate(y, m, d)
}

// dateDay parses a bare YYYYMMDD or YYYY-MM-DD per the plan's layout into
// days since 1970-01-01, for the hot path; ok is false for anything else
// (which the general parser then handles or rejects).
func (p *plan) dateDay(b []byte) (int32, bool) {
	var s stamp
	switch {
	case len(b) == 8 && (p.mode == dateCompact || p.mode == dateAuto):
		if !parseCompact(b, &s) {
			return 0, false
		}
	case len(b) == 10 && (p.mode == dateISO || p.mode == dateAuto) && b[4] == '-' && b[7] == '-':
		y, ok1 := digits4(b)
		m, ok2 := digits2(b[5:])
		d, ok3 := digits2(b[8:])
		if !ok1 || !ok2 || !ok3 || !s.setDate(y, m, d) {
			return 0, false
		}
	default:
		return 0, false
	}
	return int32(s.days), true
}

// parseISO parses YYYY-MM-DD, optionally followed by a time of day
// ([Tt ]hh:mm[:ss[.fraction]]) and an offset (Z, ±hh, ±hhmm, ±hh:mm,
// ±hh:mm:ss). With needOffset the time and the offset are required (RFC
// 3339); with dateOnly nothing may follow the date.
func parseISO(b []byte, s *stamp, needOffset, dateOnly bool) bool {
	if len(b) < 10 || b[4] != '-' || b[7] != '-' {
		return false
	}
	y, ok1 := digits4(b)
	m, ok2 := digits2(b[5:])
	d, ok3 := digits2(b[8:])
	if !ok1 || !ok2 || !ok3 || !s.setDate(y, m, d) {
		return false
	}
	b = b[10:]
	if len(b) == 0 {
		return !needOffset
	}
	if dateOnly {
		return false
	}
	// Time of day.
	if len(b) < 6 || (b[0] != 'T' && b[0] != 't' && b[0] != ' ') || b[3] != ':' {
		return false
	}
	h, ok1 := digits2(b[1:])
	mi, ok2 := digits2(b[4:])
	if !ok1 || !ok2 || h > 23 || mi > 59 {
		return false
	}
	s.hour, s.minute = h, mi
	b = b[6:]
	if len(b) >= 3 && b[0] == ':' {
		sec, ok := digits2(b[1:])
		if !ok || sec > 59 {
			return false
		}
		s.second = sec
		b = b[3:]
		if len(b) >= 2 && (b[0] == '.' || b[0] == ',') {
			i, scale := 1, int32(100000000)
			for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
				s.nsec += int32(b[i]-'0') * scale
				scale /= 10
			}
			if i == 1 {
				return false
			}
			b = b[i:]
		}
	}
	// Offset.
	if len(b) == 0 {
		return !needOffset
	}
	if len(b) == 1 && (b[0] == 'Z' || b[0] == 'z') {
		s.hasOffset = true
		return true
	}
	if b[0] != '+' && b[0] != '-' || len(b) < 3 {
		return false
	}
	sign := int32(1)
	if b[0] == '-' {
		sign = -1
	}
	oh, ok := digits2(b[1:])
	if !ok || oh > 23 {
		return false
	}
	var om, os int32
	switch r := b[3:]; {
	case len(r) == 0:
	case len(r) == 2:
		if om, ok = digits2(r); !ok {
			return false
		}
	case len(r) == 3 && r[0] == ':':
		if om, ok = digits2(r[1:]); !ok {
			return false
		}
	case len(r) == 6 && r[0] == ':' && r[3] == ':':
		var ok2 bool
		om, ok = digits2(r[1:])
		os, ok2 = digits2(r[4:])
		if !ok || !ok2 || os > 59 {
			return false
		}
	default:
		return false
	}
	if om > 59 {
		return false
	}
	s.hasOffset = true
	s.offset = sign * (oh*3600 + om*60 + os)
	return true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// parseStamp reads b per the plan's layout. typed values come from a
// database date/timestamp column in ISO form.
func (p *plan) parseStamp(b []byte, typed bool, s *stamp) bool {
	*s = stamp{}
	b = trimSpace(b)
	if typed {
		return parseISO(b, s, false, false)
	}
	switch p.mode {
	case dateAuto:
		if len(b) == 8 {
			return parseCompact(b, s)
		}
		return parseISO(b, s, false, false)
	case dateRFC3339:
		return parseISO(b, s, true, false)
	case dateISO:
		return parseISO(b, s, false, true)
	case dateCompact:
		return parseCompact(b, s)
	}
	// A Go layout: time.ParseInLocation, then reduce to numbers (the Time
	// may reference the input through a zone name, so it is not kept).
	loc := p.loc
	if loc == nil {
		loc = time.UTC
	}
	t, err := time.ParseInLocation(p.layout, unsafeString(b), loc)
	if err != nil {
		return false
	}
	y, m, d := t.Date()
	if y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	s.year, s.month, s.day = int32(y), int32(m), int32(d)
	s.days = daysFromCivil(s.year, s.month, s.day)
	s.hour, s.minute, s.second = int32(t.Hour()), int32(t.Minute()), int32(t.Second())
	s.nsec = int32(t.Nanosecond())
	s.hasOffset, s.offset = true, int32(off)
	return true
}

// day turns a stamp into days since 1970-01-01 in the plan's zone.
func (p *plan) day(s *stamp) int32 {
	if !s.hasOffset {
		return int32(s.days) // a civil date (and time) as written, in the plan's zone
	}
	u := s.unix()
	if p.loc != nil {
		_, off := time.Unix(u, 0).In(p.loc).Zone()
		u += int64(off)
	}
	return int32(floorDiv(u, 86400))
}

// instant turns a stamp into a time.Time in UTC.
func (p *plan) instant(s *stamp) time.Time {
	if s.hasOffset {
		return time.Unix(s.unix(), int64(s.nsec)).UTC()
	}
	if p.loc == nil {
		return time.Unix(s.days*86400+s.secOfDay(), int64(s.nsec)).UTC()
	}
	return time.Date(int(s.year), time.Month(s.month), int(s.day), int(s.hour), int(s.minute),
		int(s.second), int(s.nsec), p.loc).UTC()
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal parses [+-]digits[sep digits][(e|E)[+-]digits], with at
// least one digit, around optional spaces; sep is '.' or ','. The result is
// finite. Short values (up to 15 digits, no exponent) are converted
// exactly by one division; the rest by strconv.ParseFloat.
func parseDecimal(b []byte, sep byte) (float64, bool) {
	// Hot path: at most 15 digits, so the mantissa is below 2^53 and both
	// it and the power of ten are exact: one division rounds correctly.
	i := 0
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		i++
	}
	var mant uint64
	n, dot := 0, -1
	for ; i < len(b); i++ {
		if c := b[i] - '0'; c <= 9 {
			mant = mant*10 + uint64(c)
			n++
			continue
		}
		if b[i] == sep && dot < 0 {
			dot = n
			continue
		}
		break
	}
	if i == len(b) && n > 0 && n <= 15 {
		f := float64(mant)
		if dot >= 0 {
			f /= pow10[(n-dot)&15]
		}
		if neg {
			f = -f
		}
		return f, true
	}
	return parseDecimalSlow(b, sep)
}

func parseDecimalSlow(b []byte, sep byte) (float64, bool) {
	b = trimSpace(b)
	i := 0
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var mant uint64
	var nd, frac, ndigits int
	sawSep, exact := false, true
	for ; i < len(b); i++ {
		c := b[i]
		if c >= '0' && c <= '9' {
			ndigits++
			if sawSep {
				frac++
			}
			if mant == 0 && c == '0' {
				continue
			}
			if nd < 19 {
				mant = mant*10 + uint64(c-'0')
				nd++
			} else {
				exact = false
			}
			continue
		}
		if c == sep && !sawSep {
			sawSep = true
			continue
		}
		break
	}
	if ndigits == 0 {
		return 0, false
	}
	if i < len(b) {
		// Only an exponent may follow.
		if b[i] != 'e' && b[i] != 'E' {
			return 0, false
		}
		j := i + 1
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j == len(b) {
			return 0, false
		}
		for ; j < len(b); j++ {
			if b[j] < '0' || b[j] > '9' {
				return 0, false
			}
		}
		exact = false
	}
	if exact && mant < 1<<53 && frac < len(pow10) {
		f := float64(mant)
		if frac > 0 {
			f /= pow10[frac]
		}
		if neg {
			f = -f
		}
		return f, true
	}
	return parseFloatSlow(b, sep)
}

func parseFloatSlow(b []byte, sep byte) (float64, bool) {
	if sep != '.' {
		// strconv wants '.': copy on the stack, or on the heap for a long
		// value (refusing it would reject a valid number).
		var stack [64]byte
		buf := stack[:0]
		if len(b) > len(stack) {
			buf = make([]byte, 0, len(b))
		}
		buf = append(buf, b...)
		for k := range buf {
			if buf[k] == sep {
				buf[k] = '.'
			}
		}
		b = buf
	}
	f, err := strconv.ParseFloat(unsafeString(b), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// parseBool accepts true/false, t/f, yes/no, y/n and 1/0 in any case.
func parseBool(b []byte) (v, ok bool) {
	b = trimSpace(b)
	if len(b) > 5 {
		return false, false
	}
	var low [5]byte
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	switch string(low[:len(b)]) {
	case "true", "t", "yes", "y", "1":
		return true, true
	case "false", "f", "no", "n", "0":
		return false, true
	}
	return false, false
}
