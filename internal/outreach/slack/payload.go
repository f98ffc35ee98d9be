package slack

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf16"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks).
// Slack counts characters; counting UTF-16 code units is never more
// lenient than that, whichever way Slack counts astral characters.
const (
	// maxHeaderLen is a header block's plain_text limit.
	maxHeaderLen = 150
	// maxSectionLen is a section block's text limit.
	maxSectionLen = 3000
	// maxContextLen keeps the context line short; a context element's
	// text has the same 3000 limit as a section's.
	maxContextLen = 300
	// maxFallbackLen is Slack's recommended top-level text length; longer
	// text is truncated by Slack anyway.
	maxFallbackLen = 4000
)

// ellipsis marks truncated text; ellipsisLen is its UTF-16 length.
const (
	ellipsis    = "…"
	ellipsisLen = 1
)

// payload is an incoming-webhook message.
type payload struct {
	// Text is the notification and accessibility fallback for Blocks.
	Text   string  `json:"text"`
	Blocks []block `json:"blocks"`
}

type block struct {
	Type     string       `json:"type"`
	Text     *textObject  `json:"text,omitempty"`
	Elements []textObject `json:"elements,omitempty"`
}

type textObject struct {
	Type string `json:"type"` // "plain_text" or "mrkdwn"
	Text string `json:"text"`
}

// encodePayload renders m as a Block Kit message: a header with the
// subject (when there is one), a section with the text, and a context
// line naming the campaign and variant.
//
// mrkdwn text (the section, context and fallback) has &, < and > escaped
// as Slack requires, so customer data cannot inject mentions such as
// <!channel> or links; the template's *bold* and _italic_ still work. The
// header is plain_text, which Slack shows as is.
func encodePayload(m *channel.Message) ([]byte, error) {
	fallback := m.Text
	if m.Subject != "" {
		fallback = m.Subject + "\n" + m.Text
	}
	p := payload{Text: fitText(fallback, maxFallbackLen, true)}
	if m.Subject != "" {
		p.Blocks = append(p.Blocks, block{
			Type: "header",
			Text: &textObject{Type: "plain_text", Text: fitText(oneLine(m.Subject), maxHeaderLen, false)},
		})
	}
	if m.Text != "" {
		p.Blocks = append(p.Blocks, block{
			Type: "section",
			Text: &textObject{Type: "mrkdwn", Text: fitText(m.Text, maxSectionLen, true)},
		})
	}
	if context := contextLine(m.Campaign, m.Variant); context != "" {
		p.Blocks = append(p.Blocks, block{
			Type:     "context",
			Elements: []textObject{{Type: "mrkdwn", Text: fitText(context, maxContextLen, true)}},
		})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// The text is already escaped for Slack; JSON's \u0026-style HTML
	// escaping would only make it larger.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// contextLine names the campaign and variant, "" when both are empty.
func contextLine(campaign, variant string) string {
	var parts []string
	if campaign != "" {
		parts = append(parts, "Campaign: "+campaign)
	}
	if variant != "" {
		parts = append(parts, "Variant: "+variant)
	}
	return strings.Join(parts, " · ")
}

// oneLine turns line breaks and tabs into spaces: a header is one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\r', '\n', '\t', '\u2028', '\u2029':
			return ' '
		}
		return r
	}, s)
}

// fitText returns s, mrkdwn-escaped when escape is set, cut so it is at
// most limit UTF-16 code units. Cut text ends in an ellipsis, and the cut
// never splits an escape sequence such as &amp; or a character.
func fitText(s string, limit int, escape bool) string {
	total := 0
	for _, r := range s {
		total += pieceLen(r, escape)
	}
	var b strings.Builder
	budget := limit
	if total > limit {
		budget = limit - ellipsisLen
	}
	n := 0
	for _, r := range s {
		w := pieceLen(r, escape)
		if n+w > budget {
			break
		}
		n += w
		writePiece(&b, r, escape)
	}
	if total > limit {
		b.WriteString(ellipsis)
	}
	return b.String()
}

// pieceLen is the UTF-16 length of r as written by writePiece.
func pieceLen(r rune, escape bool) int {
	if escape {
		switch r {
		case '&':
			return len("&amp;")
		case '<':
			return len("&lt;")
		case '>':
			return len("&gt;")
		}
	}
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1 // invalid UTF-8 is written as U+FFFD
}

// writePiece writes r, escaped for mrkdwn when escape is set.
func writePiece(b *strings.Builder, r rune, escape bool) {
	if escape {
		switch r {
		case '&':
			b.WriteString("&amp;")
			return
		case '<':
			b.WriteString("&lt;")
			return
		case '>':
			b.WriteString("&gt;")
			return
		}
	}
	b.WriteRune(r)
}
