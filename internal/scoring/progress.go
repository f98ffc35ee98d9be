package scoring

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line progress display of the read.
type progress struct {
	w      io.Writer
	clock  Clock
	bytes  func() (done, total int64)
	start  time.Time
	last   time.Time
	label  string
	drawn  bool
	width  int
	minGap time.Duration
}

func newProgress(p *plan) *progress {
	if p.o.Progress == nil {
		return nil
	}
	now := p.o.Clock.Now()
	return &progress{w: p.o.Progress, clock: p.o.Clock, bytes: p.o.ProgressBytes, start: now,
		last: now, label: "reading", width: 30, minGap: 200 * time.Millisecond}
}

func (p *progress) update(rows int64) {
	now := p.clock.Now()
	if now.Sub(p.last) < p.minGap {
		return
	}
	p.last = now
	p.draw(rows, now)
}

func (p *progress) draw(rows int64, now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := ""
	if el > 0 {
		rate = fmt.Sprintf(", %s rows/s", human(float64(rows)/el))
	}
	line := fmt.Sprintf("%s %s rows%s", p.label, human(float64(rows)), rate)
	if p.bytes != nil {
		done, total := p.bytes()
		if total > 0 {
			frac := min(max(float64(done)/float64(total), 0), 1)
			n := int(frac * float64(p.width))
			line = fmt.Sprintf("%s [%s%s] %3.0f%% %s/%s MB", line, strings.Repeat("=", n),
				strings.Repeat(" ", p.width-n), 100*frac, human(float64(done)/1e6), human(float64(total)/1e6))
		}
	}
	fmt.Fprintf(p.w, "\r%-100s", line)
	p.drawn = true
}

// done draws the final state and ends the line.
func (p *progress) done(rows int64) {
	p.draw(rows, p.clock.Now())
	fmt.Fprintln(p.w)
}

// human formats a count with a k/M/G suffix.
func human(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
