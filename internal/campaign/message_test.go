package campaign

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

func sampleCustomer() *customer.Scored {
	return &customer.Scored{
		ID: "cust-42",
		Features: customer.Features{
			Frequency: 3, Transactions: 7, TotalSpend: 123.45, RecencyDays: 12,
			LastPurchase: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		},
		Scores: customer.Scores{
			PAlive: 0.8125, ExpectedPurchases: 1.5, ExpectedValue: 99.5,
			Custom: map[string]float64{"valueAtRisk": 42.25},
		},
		Attributes: customer.Attributes{
			"first_name": "Ada",
			"tier":       "gold",
			"vip":        true,
			"points":     1250.0,
			"signed_up":  time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600)),
		},
		Contact: customer.Contact{Email: "ada@example.com", Phone: "+491701234567", Timezone: "Europe/Berlin", Locale: "de-DE"},
	}
}

func TestCompileMessageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		msg         Message
		wantVariant string
		wantPart    string
		wantText    string
	}{
		{"empty body", Message{Subject: "hi"}, "", "body", "empty"},
		{"subject parse error", Message{Subject: "Hi {{.Email", Body: "x"}, "", "subject", "unclosed action"},
		{"body parse error", Message{Body: "{{if .PAlive}}open"}, "", "body", "unexpected EOF"},
		{"unknown field", Message{Body: "Hi {{.Emial}}"}, "", "body", "unknown field .Emial"},
		{"unknown field via $", Message{Body: "{{with .Attributes}}{{$.Nope}}{{end}}"}, "", "body", "unknown field .Nope"},
		{"unknown function", Message{Body: "{{shout .Email}}"}, "", "body", `function "shout" not defined`},
		{"variant body", Message{Body: "x", Variants: []VariantMessage{{Name: "a", Weight: 1}, {Name: "b", Weight: 1, Body: "{{.ID"}}}, "b", "body", "unclosed action"},
		{"variant subject unknown field", Message{Body: "x", Variants: []VariantMessage{{Name: "b", Weight: 1, Subject: "{{.Foo}}"}}}, "b", "subject", "unknown field .Foo"},
		{"unnamed variant", Message{Body: "x", Variants: []VariantMessage{{Weight: 1}}}, "", "name", "no name"},
		{"duplicate variant", Message{Body: "x", Variants: []VariantMessage{{Name: "a", Weight: 1}, {Name: "a", Weight: 2}}}, "a", "name", "duplicate"},
		{"all paused", Message{Body: "x", Variants: []VariantMessage{{Name: "a"}, {Name: "b"}}}, "", "weight", "weight above 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileMessage(tt.msg)
			if err == nil {
				t.Fatalf("CompileMessage = %v, want an error", c)
			}
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error %T %v is not a *TemplateError", err, err)
			}
			if te.Variant != tt.wantVariant || te.Part != tt.wantPart || !strings.Contains(te.Message, tt.wantText) {
				t.Errorf("error %+v, want variant %q part %q message containing %q", te, tt.wantVariant, tt.wantPart, tt.wantText)
			}
			if tt.wantVariant != "" && !strings.Contains(err.Error(), tt.wantVariant) {
				t.Errorf("Error() = %q does not name the variant", err)
			}
		})
	}
}

func TestCompiledFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  Message
		want []string
	}{
		{"plain text", Message{Body: "Hello"}, []string{}},
		{"attribute", Message{Body: "Hi {{.Attributes.first_name}}"}, []string{"Attributes"}},
		{"subject and body", Message{Subject: "{{.ID}}", Body: "{{.Email}}"}, []string{"Email", "ID"}},
		{"dollar", Message{Body: "{{$.Phone}}"}, []string{"Phone"}},
		{"with rebinds dot", Message{Body: "{{with .Attributes}}{{.first_name}} {{$.ID}}{{end}}"}, []string{"Attributes", "ID"}},
		{"with else keeps dot", Message{Body: `{{with index .Attributes "x"}}{{.}}{{else}}{{.Locale}}{{end}}`}, []string{"Attributes", "Locale"}},
		{"with dot stays root", Message{Body: "{{with .}}{{.ID}}{{end}}"}, []string{"ID"}},
		{"range", Message{Body: "{{range $k, $v := .Custom}}{{$k}}={{$v}} {{.}}{{end}}"}, []string{"Custom"}},
		{"if and functions", Message{Body: `{{if gt .PAlive 0.5}}{{printf "%.2f" .ExpectedValue}}{{end}}`}, []string{"ExpectedValue", "PAlive"}},
		{"chain", Message{Body: "{{(.Attributes).tier}}"}, []string{"Attributes"}},
		{"variable", Message{Body: "{{$a := .Attributes}}{{$a.tier}}"}, []string{"Attributes"}},
		{"index", Message{Body: `{{index .Attributes "first_name"}}`}, []string{"Attributes"}},
		{"define with root", Message{Body: `{{define "g"}}{{.Locale}}{{end}}{{template "g" .}}`}, []string{"Locale"}},
		{"define with a field", Message{Body: `{{define "g"}}{{.tier}}{{$.tier}}{{end}}{{template "g" .Attributes}}`}, []string{"Attributes"}},
		{"whole data", Message{Body: "{{.}}"}, DataKeys()},
		{"whole data via $", Message{Body: `{{printf "%v" $}}`}, DataKeys()},
		{"variants add theirs", Message{Body: "{{.ID}}", Variants: []VariantMessage{
			{Name: "a", Weight: 1, Subject: "{{.TotalSpend}}"},
			{Name: "b", Weight: 1, Body: "{{.LastPurchase}}"},
		}}, []string{"ID", "LastPurchase", "TotalSpend"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileMessage(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Fields(); !slices.Equal(got, tt.want) {
				t.Errorf("Fields() = %q, want %q", got, tt.want)
			}
			// What Fields names is enough to render.
			if _, _, err := c.Render("", TemplateData(sampleCustomer(), c.Fields())); err != nil {
				t.Errorf("Render with Fields only: %v", err)
			}
		})
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	c, err := CompileMessage(Message{
		Subject: "Hi {{.Attributes.first_name}}",
		Body:    `Dear {{with index .Attributes "nickname"}}{{.}}{{else}}friend{{end}}, you have {{.Attributes.points}} points.`,
		Variants: []VariantMessage{
			{Name: "control", Weight: 1},
			{Name: "urgent", Weight: 1, Subject: "Last chance, {{.Attributes.first_name}}"},
			{Name: "missing", Weight: 1, Body: "Your {{.Attributes.nickname}}"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Variants(); !slices.Equal(got, []Variant{{"control", 1}, {"urgent", 1}, {"missing", 1}}) {
		t.Errorf("Variants() = %v", got)
	}
	data := TemplateData(sampleCustomer(), c.Fields())
	tests := []struct {
		variant, subject, body, wantErr string
	}{
		{"", "Hi Ada", "Dear friend, you have 1250 points.", ""},
		{"control", "Hi Ada", "Dear friend, you have 1250 points.", ""},
		{"urgent", "Last chance, Ada", "Dear friend, you have 1250 points.", ""},
		{"missing", "", "", `map has no entry for key "nickname"`},
		{"nope", "", "", "unknown variant"},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			t.Parallel()
			subject, body, err := c.Render(tt.variant, data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				if subject != "" || body != "" {
					t.Errorf("partial output %q / %q on error", subject, body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if subject != tt.subject || body != tt.body {
				t.Errorf("got %q / %q, want %q / %q", subject, body, tt.subject, tt.body)
			}
		})
	}
}

// TestRenderMissingData checks that nothing renders "<no value>".
func TestRenderMissingData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		data map[string]any
	}{
		{"missing attribute", "Hi {{.Attributes.first_name}}", map[string]any{"Attributes": map[string]any{}}},
		{"missing custom score", "{{.Custom.churn}}", map[string]any{"Custom": map[string]any{}}},
		{"missing top-level key", "Hi {{.Email}}", map[string]any{}},
		{"nil data", "Hi {{.Email}}", nil},
		{"key not frozen", "{{.ID}} {{.Email}}", map[string]any{"ID": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileMessage(Message{Subject: "s", Body: tt.body})
			if err != nil {
				t.Fatal(err)
			}
			s, b, err := c.Render("", tt.data)
			if err == nil {
				t.Fatalf("Render = %q / %q, want an error", s, b)
			}
			if s != "" || b != "" {
				t.Errorf("partial output %q / %q", s, b)
			}
		})
	}
}

// TestTemplateDataJSONRoundTrip checks that data frozen as JSON and decoded
// back is the same data and renders the same message.
func TestTemplateDataJSONRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := CompileMessage(Message{
		Subject: "{{.ID}} {{.Email}} {{.Phone}} {{.Locale}} {{.TimeZone}}",
		Body: `{{.Attributes.first_name}} {{.Attributes.vip}} {{.Attributes.points}} {{.Attributes.signed_up}}
{{.PAlive}} {{printf "%.2f" .ExpectedValue}} {{.ExpectedPurchases}} {{.Frequency}} {{.RecencyDays}}
{{.TotalSpend}} {{.LastPurchase}} {{.Custom.valueAtRisk}} {{if .Attributes.vip}}VIP{{end}}
{{if gt .Frequency 2.0}}loyal{{end}}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Fields(); !slices.Equal(got, DataKeys()) {
		t.Fatalf("Fields() = %v, want every key", got)
	}
	tests := []struct {
		name string
		c    *customer.Scored
	}{
		{"full", sampleCustomer()},
		{"empty maps", func() *customer.Scored {
			c := sampleCustomer()
			c.Attributes = customer.Attributes{"first_name": "B", "vip": false, "points": 0.0, "signed_up": time.Time{}}
			c.Scores.Custom = map[string]float64{"valueAtRisk": 0}
			c.Features.LastPurchase = time.Time{}
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := TemplateData(tt.c, c.Fields())
			raw, err := json.Marshal(data)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(data, back) {
				t.Errorf("JSON round trip changed the data:\n%#v\n%#v", data, back)
			}
			s1, b1, err1 := c.Render("", data)
			s2, b2, err2 := c.Render("", back)
			if err1 != nil || err2 != nil {
				t.Fatalf("render: %v / %v", err1, err2)
			}
			if s1 != s2 || b1 != b2 {
				t.Errorf("renders differ:\n%q\n%q", b1, b2)
			}
		})
	}
	// The full customer's rendering, spelled out.
	_, body, _ := c.Render("", TemplateData(sampleCustomer(), c.Fields()))
	want := "Ada true 1250 2024-05-06T05:08:09Z\n0.8125 99.50 1.5 3 12\n123.45 2026-02-01T00:00:00Z 42.25 VIP\nloyal"
	if body != want {
		t.Errorf("body =\n%q\nwant\n%q", body, want)
	}
}

func TestTemplateData(t *testing.T) {
	t.Parallel()
	c := sampleCustomer()
	c.Scores.PAlive = math.NaN()
	c.Scores.Custom["broken"] = math.Inf(1)
	c.Attributes["weird"] = []int{1} // not an attribute type: dropped
	tests := []struct {
		name   string
		fields []string
		want   map[string]any
	}{
		{"nothing", nil, map[string]any{}},
		{"unknown keys ignored", []string{"Nope", "ID"}, map[string]any{"ID": "cust-42"}},
		{"non-finite left out", []string{"PAlive", "ExpectedValue"}, map[string]any{"ExpectedValue": 99.5}},
		{"custom", []string{"Custom"}, map[string]any{"Custom": map[string]any{"valueAtRisk": 42.25}}},
		{"nil maps become empty", []string{"Attributes", "Custom"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := c
			if tt.want == nil {
				in = &customer.Scored{ID: "bare"}
				tt.want = map[string]any{"Attributes": map[string]any{}, "Custom": map[string]any{}}
			}
			got := TemplateData(in, tt.fields)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("TemplateData = %#v, want %#v", got, tt.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("not JSON-encodable: %v", err)
			}
		})
	}
}

func TestRenderAllHTMLEscapes(t *testing.T) {
	c, err := CompileMessage(Message{Subject: "Hi", Body: "Hi {{.Attributes.name}}",
		HTML:     `<p>Hi {{.Attributes.name}}</p><a href="https://shop.example/?u={{.ID}}">shop</a>`,
		Variants: []VariantMessage{{Name: "b", Weight: 1, HTML: `<b>{{.Attributes.name}}</b>`}, {Name: "t", Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Fields(); !slices.Equal(got, []string{KeyAttributes, KeyID}) {
		t.Errorf("fields = %v", got)
	}
	data := map[string]any{"ID": "a&b c", "Attributes": map[string]any{"name": "<script>x</script>"}}
	for _, tc := range []struct{ variant, html string }{
		{"", `<p>Hi &lt;script&gt;x&lt;/script&gt;</p><a href="https://shop.example/?u=a%26b%20c">shop</a>`},
		{"b", `<b>&lt;script&gt;x&lt;/script&gt;</b>`},
		{"t", `<p>Hi &lt;script&gt;x&lt;/script&gt;</p><a href="https://shop.example/?u=a%26b%20c">shop</a>`},
	} {
		_, text, html, err := c.RenderAll(tc.variant, data)
		if err != nil {
			t.Fatal(err)
		}
		if text != "Hi <script>x</script>" || html != tc.html {
			t.Errorf("variant %q: text %q html %q", tc.variant, text, html)
		}
	}
	if _, _, html, _ := mustCompile(t, Message{Body: "x"}).RenderAll("", nil); html != "" {
		t.Errorf("no HTML body rendered %q", html)
	}
	for _, bad := range []string{`<a href="{{.ID}`, `{{.Nope}}`, `<script>var x = "{{.ID}}</script`} {
		if _, err := CompileMessage(Message{Body: "x", HTML: bad}); err == nil {
			t.Errorf("HTML %q compiled", bad)
		} else if te := (*TemplateError)(nil); !errors.As(err, &te) || te.Part != "html" {
			t.Errorf("HTML %q: %v, want a TemplateError on part html", bad, err)
		}
	}
}

func mustCompile(t *testing.T, m Message) *Compiled {
	t.Helper()
	c, err := CompileMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMessageCost: a template cannot make a render expensive — ranges
// only over customer data and at most maxRangeDepth deep, and no rendered
// part longer than MaxRenderedBytes.
func TestMessageCost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body    string
		compile bool
	}{
		{`{{range 100000000}}{{end}}`, false},
		{`{{$n := 100000000}}{{range $n}}x{{end}}`, false},
		{`{{range (len .Attributes)}}x{{end}}`, false},
		{`{{range $k, $v := .Attributes}}{{$k}}={{$v}} {{end}}`, true},
		{`{{range .Attributes}}{{range $.Attributes}}x{{end}}{{end}}`, true},
		{`{{range .Attributes}}{{range $.Attributes}}{{range $.Attributes}}x{{end}}{{end}}{{end}}`, false},
		{`{{with .Attributes}}{{range .}}x{{end}}{{end}}`, true},
	} {
		_, err := CompileMessage(Message{Body: tc.body})
		if (err == nil) != tc.compile {
			t.Errorf("CompileMessage(%q): %v, want compiled %v", tc.body, err, tc.compile)
		}
	}
	c := sampleCustomer()
	c.Attributes["first_name"] = strings.Repeat("A", 50_000)
	// 5 attributes × 5 × 50 kB: 1.25 MB.
	m, err := CompileMessage(Message{Body: `{{range .Attributes}}{{range $.Attributes}}{{$.Attributes.first_name}}{{end}}{{end}}`})
	if err != nil {
		t.Fatal(err)
	}
	if _, body, err := m.Render("", TemplateData(c, m.Fields())); !errors.Is(err, errTooLong) || body != "" {
		t.Fatalf("a 1.25 MB render: %d bytes, %.200v; want errTooLong", len(body), err)
	}
}
