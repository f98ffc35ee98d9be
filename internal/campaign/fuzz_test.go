package campaign

import (
	"errors"
	"testing"
)

// FuzzMessage compiles any subject, body and HTML body and renders what
// compiles for a customer: a template is rejected with a *TemplateError or
// renders (or fails for this customer's data) — never a panic.
func FuzzMessage(f *testing.F) {
	for _, seed := range [][3]string{
		{"We miss you, {{.Attributes.first_name}}", "Here is 15% off.", ""},
		{"", "{{with .Attributes}}{{.first_name}} {{$.ID}}{{end}}", "<p>{{.Attributes.first_name}}</p>"},
		{"{{.Nope}}", "x", ""},
		{"{{printf \"%v\" .}}", "{{template \"x\"}}", ""},
		{"", "{{define \"x\"}}{{template \"x\"}}{{end}}{{template \"x\"}}", ""},
		{"", "<script>{{.Attributes.first_name}}</script>", "<a href=\"{{.Email}}\">{{.Email}}</a>"},
		{"{{", "}}", "{{end}}"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	c := sampleCustomer()
	f.Fuzz(func(t *testing.T, subject, body, html string) {
		m, err := CompileMessage(Message{Subject: subject, Body: body, HTML: html})
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("CompileMessage: %T %v, want a *TemplateError", err, err)
			}
			return
		}
		_, _, _, _ = m.RenderAll("", TemplateData(c, m.Fields()))
	})
}
