package campaign

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Message mirrors a campaign's spec.message: subject and body templates,
// and optional weighted variants that may override either.
type Message struct {
	// Subject is the subject template; it may be empty.
	Subject string `json:"subject,omitempty"`
	// Body is the body template; it must not be empty.
	Body string `json:"body"`
	// HTML is the HTML body template (html/template: values are escaped
	// for their context); empty for text-only messages.
	HTML string `json:"html,omitempty"`
	// Variants split the audience by weight.
	Variants []VariantMessage `json:"variants,omitempty"`
}

// VariantMessage is one variant of a Message.
type VariantMessage struct {
	// Name identifies the variant; names must be unique and not empty.
	Name string `json:"name"`
	// Weight is the variant's relative share; 0 pauses it. The API's
	// default (1 when unset) is applied by the caller.
	Weight int32 `json:"weight"`
	// Subject overrides the message's subject when not empty.
	Subject string `json:"subject,omitempty"`
	// Body overrides the message's body when not empty.
	Body string `json:"body,omitempty"`
	// HTML overrides the message's HTML body when not empty.
	HTML string `json:"html,omitempty"`
}

// TemplateError says which template of a message does not compile and why.
type TemplateError struct {
	// Variant is the variant's name, or "" for the message itself.
	Variant string
	// Part is "subject" or "body".
	Part string
	// Message is the parser's message, or what else is wrong.
	Message string
}

// Error implements error.
func (e *TemplateError) Error() string {
	if e.Variant == "" {
		return fmt.Sprintf("message %s: %s", e.Part, e.Message)
	}
	return fmt.Sprintf("variant %q %s: %s", e.Variant, e.Part, e.Message)
}

// The top-level keys of the template data (see the package doc).
const (
	KeyID                = "ID"
	KeyEmail             = "Email"
	KeyPhone             = "Phone"
	KeyLocale            = "Locale"
	KeyTimeZone          = "TimeZone"
	KeyAttributes        = "Attributes"
	KeyPAlive            = "PAlive"
	KeyExpectedValue     = "ExpectedValue"
	KeyExpectedPurchases = "ExpectedPurchases"
	KeyFrequency         = "Frequency"
	KeyRecencyDays       = "RecencyDays"
	KeyTotalSpend        = "TotalSpend"
	KeyLastPurchase      = "LastPurchase"
	KeyCustom            = "Custom"
)

// dataKeys lists every template data key, sorted.
var dataKeys = func() []string {
	k := []string{KeyID, KeyEmail, KeyPhone, KeyLocale, KeyTimeZone, KeyAttributes,
		KeyPAlive, KeyExpectedValue, KeyExpectedPurchases, KeyFrequency,
		KeyRecencyDays, KeyTotalSpend, KeyLastPurchase, KeyCustom}
	slices.Sort(k)
	return k
}()

// DataKeys returns every top-level key of the template data, sorted.
func DataKeys() []string { return slices.Clone(dataKeys) }

// templates are one message's templates: subject, text body and, when
// the message has one, the HTML body.
type templates struct {
	subject, body *template.Template
	html          *htmltemplate.Template
}

// Compiled is a compiled Message, safe for concurrent use.
type Compiled struct {
	base     templates
	variants map[string]templates
	weights  []Variant
	fields   []string
}

// CompileMessage parses a message's templates (text/template, with
// missingkey=error) and checks that they only reference known data keys.
// A template that does not parse, or references an unknown key, gives a
// *TemplateError naming it; so do an empty body and a variant without a
// name or with a duplicate one.
func CompileMessage(m Message) (*Compiled, error) {
	if strings.TrimSpace(m.Body) == "" {
		return nil, &TemplateError{Part: "body", Message: "empty"}
	}
	c := &Compiled{variants: map[string]templates{}}
	refs := fieldSet{}
	var err error
	if c.base, err = compilePair("", m.Subject, m.Body, refs); err != nil {
		return nil, err
	}
	if m.HTML != "" {
		if c.base.html, err = compileHTML("", m.HTML, refs); err != nil {
			return nil, err
		}
	}
	for _, v := range m.Variants {
		if v.Name == "" {
			return nil, &TemplateError{Part: "name", Message: "a variant has no name"}
		}
		if _, dup := c.variants[v.Name]; dup {
			return nil, &TemplateError{Variant: v.Name, Part: "name", Message: "duplicate variant name"}
		}
		pair := c.base
		if v.Subject != "" {
			if pair.subject, err = compileOne(v.Name, "subject", v.Subject, refs); err != nil {
				return nil, err
			}
		}
		if v.Body != "" {
			if pair.body, err = compileOne(v.Name, "body", v.Body, refs); err != nil {
				return nil, err
			}
		}
		if v.HTML != "" {
			if pair.html, err = compileHTML(v.Name, v.HTML, refs); err != nil {
				return nil, err
			}
		}
		c.variants[v.Name] = pair
		c.weights = append(c.weights, Variant{Name: v.Name, Weight: v.Weight})
	}
	if len(c.weights) > 0 && !slices.ContainsFunc(c.weights, func(v Variant) bool { return v.Weight > 0 }) {
		return nil, &TemplateError{Part: "weight", Message: "at least one variant must have a weight above 0"}
	}
	c.fields = refs.sorted()
	return c, nil
}

// compilePair compiles a subject and a body.
func compilePair(variant, subject, body string, refs fieldSet) (templates, error) {
	var p templates
	var err error
	if p.subject, err = compileOne(variant, "subject", subject, refs); err != nil {
		return p, err
	}
	p.body, err = compileOne(variant, "body", body, refs)
	return p, err
}

// compileOne parses one template and adds the data keys it references to
// refs.
func compileOne(variant, part, text string, refs fieldSet) (*template.Template, error) {
	name := part
	if variant != "" {
		name = "variant " + variant + " " + part
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, &TemplateError{Variant: variant, Part: part, Message: err.Error()}
	}
	own := fieldSet{}
	var problems []string
	walkTemplate(t, t, rootScope, own, map[string]bool{}, &problems)
	if len(problems) > 0 {
		return nil, &TemplateError{Variant: variant, Part: part, Message: problems[0]}
	}
	for k := range own {
		if !slices.Contains(dataKeys, k) {
			return nil, &TemplateError{Variant: variant, Part: part,
				Message: fmt.Sprintf("unknown field .%s (known: %s)", k, strings.Join(dataKeys, ", "))}
		}
		refs[k] = true
	}
	return t, nil
}

// compileHTML compiles an HTML body with html/template, which escapes
// every value for its context (a customer's name cannot inject markup).
// The text/template parse checks its data keys the same way as the rest.
func compileHTML(variant, text string, refs fieldSet) (*htmltemplate.Template, error) {
	if _, err := compileOne(variant, "html", text, refs); err != nil {
		return nil, err
	}
	name := "html"
	if variant != "" {
		name = "variant " + variant + " html"
	}
	t, err := htmltemplate.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, &TemplateError{Variant: variant, Part: "html", Message: err.Error()}
	}
	// Escaping is decided on first use; do it now, so a template whose
	// context is ambiguous is refused at reconcile, not at send time.
	if err := t.Execute(io.Discard, nil); err != nil {
		var escErr *htmltemplate.Error
		if errors.As(err, &escErr) {
			return nil, &TemplateError{Variant: variant, Part: "html", Message: escErr.Error()}
		}
	}
	return t, nil
}

// Variants returns the variants' names and weights, in the message's
// order, for PickVariant.
func (c *Compiled) Variants() []Variant { return slices.Clone(c.weights) }

// Fields returns the top-level data keys the templates reference, sorted:
// what TemplateData must freeze into a target for Render to succeed.
func (c *Compiled) Fields() []string { return slices.Clone(c.fields) }

// Render renders the subject and body of a variant ("" for the message
// itself) over data, as TemplateData made it (or as decoded back from
// JSON). A missing key, an unknown variant or any execution error fails
// the whole render: no partial output is returned.
func (c *Compiled) Render(variant string, data map[string]any) (subject, body string, err error) {
	subject, body, _, err = c.RenderAll(variant, data)
	return subject, body, err
}

// RenderAll renders like Render, and the HTML body too ("" when the
// message has none).
func (c *Compiled) RenderAll(variant string, data map[string]any) (subject, body, html string, err error) {
	p := c.base
	if variant != "" {
		var ok bool
		if p, ok = c.variants[variant]; !ok {
			return "", "", "", fmt.Errorf("campaign: unknown variant %q", variant)
		}
	}
	var buf cappedBuffer
	if err := p.subject.Execute(&buf, data); err != nil {
		return "", "", "", err
	}
	subject = buf.String()
	buf.Reset()
	if err := p.body.Execute(&buf, data); err != nil {
		return "", "", "", err
	}
	body = buf.String()
	if p.html != nil {
		buf.Reset()
		if err := p.html.Execute(&buf, data); err != nil {
			return "", "", "", err
		}
		html = buf.String()
	}
	return subject, body, html, nil
}

// MaxRenderedBytes bounds each rendered part of a message (subject, body,
// HTML body): a template that writes more fails to render, for this
// customer, rather than sending megabytes.
const MaxRenderedBytes = 1 << 20

// errTooLong is what a render that passes MaxRenderedBytes fails with.
var errTooLong = fmt.Errorf("campaign: a rendered message part is longer than %d bytes", MaxRenderedBytes)

// cappedBuffer is a bytes.Buffer that refuses to grow past
// MaxRenderedBytes.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxRenderedBytes {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

// TemplateData returns the template data of a customer, restricted to the
// given top-level keys (Compiled.Fields; unknown keys are ignored). Its
// values survive a JSON round trip unchanged, because they are frozen into
// targets as JSON: numbers are float64, times are RFC 3339 strings in UTC
// ("" for a zero time), attribute and custom-score maps are
// map[string]any (never nil). A number that is not finite (NaN, ±Inf),
// which JSON cannot carry, is left out, so a template that uses it fails
// to render for that customer instead of printing garbage.
func TemplateData(c *customer.Scored, fields []string) map[string]any {
	out := make(map[string]any, len(fields))
	num := func(k string, v float64) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	for _, k := range fields {
		switch k {
		case KeyID:
			out[k] = c.ID
		case KeyEmail:
			out[k] = c.Contact.Email
		case KeyPhone:
			out[k] = c.Contact.Phone
		case KeyLocale:
			out[k] = c.Contact.Locale
		case KeyTimeZone:
			out[k] = c.Contact.Timezone
		case KeyAttributes:
			attrs := make(map[string]any, len(c.Attributes))
			for name, v := range c.Attributes {
				if jv, ok := jsonValue(v); ok {
					attrs[name] = jv
				}
			}
			out[k] = attrs
		case KeyPAlive:
			num(k, c.Scores.PAlive)
		case KeyExpectedValue:
			num(k, c.Scores.ExpectedValue)
		case KeyExpectedPurchases:
			num(k, c.Scores.ExpectedPurchases)
		case KeyFrequency:
			out[k] = float64(c.Features.Frequency)
		case KeyRecencyDays:
			out[k] = float64(c.Features.RecencyDays)
		case KeyTotalSpend:
			num(k, c.Features.TotalSpend)
		case KeyLastPurchase:
			out[k] = timeString(c.Features.LastPurchase)
		case KeyCustom:
			custom := make(map[string]any, len(c.Scores.Custom))
			for name, v := range c.Scores.Custom {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					custom[name] = v
				}
			}
			out[k] = custom
		}
	}
	return out
}

// jsonValue converts an attribute value to its JSON-stable form.
func jsonValue(v any) (any, bool) {
	switch x := v.(type) {
	case string, bool:
		return x, true
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case float32:
		return jsonValue(float64(x))
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case time.Time:
		return timeString(x), true
	}
	return nil, false
}

// timeString formats a time as RFC 3339 in UTC, "" for the zero time.
func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// fieldSet is a set of top-level data keys.
type fieldSet map[string]bool

// sorted returns the keys in order.
func (s fieldSet) sorted() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// scope says what dot and $ are while walking a template: the root data or
// something else (a value a with, range or template call rebound them to).
type scope struct {
	dotRoot, dollarRoot bool
}

// rootScope is the scope at the top of a message template.
var rootScope = scope{dotRoot: true, dollarRoot: true}

// walkTemplate adds to refs the top-level data keys template t references
// (set is the template set, for {{template}} calls). A whole-data use of
// the root ({{.}}, {{printf "%v" $}}) references every key. visited guards
// against recursive templates per scope.
func walkTemplate(set, t *template.Template, sc scope, refs fieldSet, visited map[string]bool, problems *[]string) {
	if t == nil || t.Tree == nil {
		return
	}
	key := fmt.Sprintf("%s/%v", t.Name(), sc)
	if visited[key] {
		return
	}
	visited[key] = true
	w := walker{set: set, refs: refs, visited: visited, problems: problems}
	w.node(t.Tree.Root, sc)
}

// maxRangeDepth bounds nested range actions: each level multiplies the
// work of a render by the length of what it ranges over.
const maxRangeDepth = 2

// rangesOverData reports whether a range pipeline is customer data — a
// field (.Attributes, $.Custom, $v.x) or dot — rather than a number or a
// computed value: {{range 100000000}} alone would keep a runner busy for
// seconds per message, and data is only as long as the source made it.
func rangesOverData(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode, *parse.DotNode:
		return true
	case *parse.VariableNode:
		return len(a.Ident) > 1
	}
	return false
}

// walker collects the root data keys of one template set.
type walker struct {
	set     *template.Template
	refs    fieldSet
	visited map[string]bool
	// problems collects what makes the template unsafe to render.
	problems *[]string
	// ranges is the depth of range actions around the node walked.
	ranges int
}

// all records every key: the root data is used as a whole.
func (w walker) all() {
	for _, k := range dataKeys {
		w.refs[k] = true
	}
}

// node walks a template node with dot and $ as sc says.
func (w walker) node(n parse.Node, sc scope) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			w.node(c, sc)
		}
	case *parse.ActionNode:
		w.pipe(n.Pipe, sc)
	case *parse.IfNode:
		w.pipe(n.Pipe, sc)
		w.node(n.List, sc)
		w.node(n.ElseList, sc)
	case *parse.WithNode:
		// Inside, dot is the pipeline's value: still the root only for
		// {{with .}} or {{with $}}, which use no key by themselves.
		root := isRootValue(n.Pipe, sc)
		if !root {
			w.pipe(n.Pipe, sc)
		}
		w.node(n.List, scope{dotRoot: root, dollarRoot: sc.dollarRoot})
		w.node(n.ElseList, sc)
	case *parse.RangeNode:
		if !rangesOverData(n.Pipe) {
			*w.problems = append(*w.problems, fmt.Sprintf("range must iterate over customer data (a field such as .Attributes), not %s", n.Pipe))
		}
		if w.ranges >= maxRangeDepth {
			*w.problems = append(*w.problems, fmt.Sprintf("ranges nest at most %d deep", maxRangeDepth))
		}
		w.pipe(n.Pipe, sc)
		inner := w
		inner.ranges++
		inner.node(n.List, scope{dollarRoot: sc.dollarRoot})
		w.node(n.ElseList, sc)
	case *parse.TemplateNode:
		// The called template's dot and $ are the argument; passing the
		// root on ({{template "x" .}}) uses what the callee uses.
		root := isRootValue(n.Pipe, sc)
		if !root {
			w.pipe(n.Pipe, sc)
		}
		walkTemplate(w.set, w.set.Lookup(n.Name), scope{dotRoot: root, dollarRoot: root}, w.refs, w.visited, w.problems)
	case *parse.BreakNode, *parse.ContinueNode, *parse.TextNode, *parse.CommentNode:
	}
}

// pipe walks every argument of a pipeline.
func (w walker) pipe(p *parse.PipeNode, sc scope) {
	if p == nil {
		return
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			w.arg(arg, sc)
		}
	}
}

// arg records the root key an argument references, if any.
func (w walker) arg(n parse.Node, sc scope) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if sc.dotRoot && len(n.Ident) > 0 {
			w.refs[n.Ident[0]] = true
		}
	case *parse.VariableNode:
		if n.Ident[0] == "$" && sc.dollarRoot {
			if len(n.Ident) > 1 {
				w.refs[n.Ident[1]] = true
			} else {
				w.all()
			}
		}
	case *parse.DotNode:
		if sc.dotRoot {
			w.all()
		}
	case *parse.ChainNode:
		// (pipeline).Field: the pipeline's own references count; a chain
		// on the root itself, (.).Email, is caught as a use of dot.
		w.arg(n.Node, sc)
	case *parse.PipeNode:
		w.pipe(n, sc)
	}
}

// isRootValue reports whether a pipeline evaluates to the root data: a
// single command whose only argument is dot (when dot is the root) or $
// (when $ is).
func isRootValue(p *parse.PipeNode, sc scope) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 || len(p.Decl) > 0 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.DotNode:
		return sc.dotRoot
	case *parse.VariableNode:
		return len(a.Ident) == 1 && a.Ident[0] == "$" && sc.dollarRoot
	}
	return false
}
