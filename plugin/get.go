package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// kind describes one of the six kinds for the plugin.
type kind struct {
	Kind     string
	resource string // plural resource name
	names    []string
	newList  func() client.ObjectList
	newObj   func() client.Object
	// columns are the kind's own columns, between REASON and AGE.
	columns []string
	row     func(o client.Object, now time.Time) []string
}

var kinds = []*kind{
	{
		Kind: "CustomerSource", resource: "customersources",
		names:   []string{"sources", "source", "customersources", "customersource", "csrc"},
		newList: func() client.ObjectList { return &retentionv1.CustomerSourceList{} },
		newObj:  func() client.Object { return &retentionv1.CustomerSource{} },
		columns: []string{"CUSTOMERS", "MODEL", "SUSPENDED", "LAST SCORED"},
		row: func(o client.Object, now time.Time) []string {
			s := o.(*retentionv1.CustomerSource)
			model := ""
			if s.Status.Model != nil {
				model = s.Status.Model.Selected
			}
			return []string{strconv.FormatInt(s.Status.Customers, 10), orNone(model), strconv.FormatBool(s.Spec.Suspend), age(s.Status.LastScoredTime, now)}
		},
	},
	{
		Kind: "Segment", resource: "segments",
		names:   []string{"segments", "segment", "seg"},
		newList: func() client.ObjectList { return &retentionv1.SegmentList{} },
		newObj:  func() client.Object { return &retentionv1.Segment{} },
		columns: []string{"SOURCE", "SIZE", "SHARE"},
		row: func(o client.Object, _ time.Time) []string {
			s := o.(*retentionv1.Segment)
			share := "<none>"
			if s.Status.SharePercent != "" {
				share = s.Status.SharePercent + "%"
			}
			return []string{s.Spec.SourceRef.Name, strconv.FormatInt(s.Status.Size, 10), share}
		},
	},
	{
		Kind: "Channel", resource: "channels",
		names:   []string{"channels", "channel", "chan"},
		newList: func() client.ObjectList { return &retentionv1.ChannelList{} },
		newObj:  func() client.Object { return &retentionv1.Channel{} },
		columns: []string{"TYPE"},
		row: func(o client.Object, _ time.Time) []string {
			c := o.(*retentionv1.Channel)
			typ := "<none>"
			switch {
			case c.Spec.Webhook != nil:
				typ = "webhook"
			case c.Spec.SMTP != nil:
				typ = "smtp"
			case c.Spec.Slack != nil:
				typ = "slack"
			}
			return []string{typ}
		},
	},
	{
		Kind: "Campaign", resource: "campaigns",
		names:   []string{"campaigns", "campaign", "camp"},
		newList: func() client.ObjectList { return &retentionv1.CampaignList{} },
		newObj:  func() client.Object { return &retentionv1.Campaign{} },
		columns: []string{"SEGMENT", "CHANNEL", "SCHEDULE", "SUSPENDED", "SENT", "LAST SCHEDULE"},
		row: func(o client.Object, now time.Time) []string {
			c := o.(*retentionv1.Campaign)
			schedule := c.Spec.Schedule
			if schedule == "" && c.Spec.Trigger != "" {
				schedule = string(c.Spec.Trigger)
			}
			sent := "0"
			if c.Status.Totals != nil {
				sent = strconv.FormatInt(c.Status.Totals.Sent, 10)
			}
			return []string{c.Spec.SegmentRef.Name, c.Spec.ChannelRef.Name, orNone(schedule), strconv.FormatBool(c.Spec.Suspend), sent, age(c.Status.LastScheduleTime, now)}
		},
	},
	{
		Kind: "CampaignRun", resource: "campaignruns",
		names:   []string{"runs", "run", "campaignruns", "campaignrun", "crun"},
		newList: func() client.ObjectList { return &retentionv1.CampaignRunList{} },
		newObj:  func() client.Object { return &retentionv1.CampaignRun{} },
		columns: []string{"CAMPAIGN", "PHASE", "TREATMENT", "SENT", "UPLIFT"},
		row: func(o client.Object, _ time.Time) []string {
			r := o.(*retentionv1.CampaignRun)
			return runColumns(r)
		},
	},
	{
		Kind: "CustomerErasure", resource: "customererasures",
		names:   []string{"erasures", "erasure", "customererasures", "customererasure"},
		newList: func() client.ObjectList { return &retentionv1.CustomerErasureList{} },
		newObj:  func() client.Object { return &retentionv1.CustomerErasure{} },
		columns: []string{"SOURCE", "PHASE", "CUSTOMERS", "COMPLETED"},
		row: func(o client.Object, now time.Time) []string {
			e := o.(*retentionv1.CustomerErasure)
			customers := "<none>"
			if e.Status.Erased != nil {
				customers = strconv.FormatInt(e.Status.Erased.Customers, 10)
			}
			phase := string(e.Status.Phase)
			if phase == "" {
				phase = string(retentionv1.ErasurePending)
			}
			return []string{e.Spec.SourceRef.Name, phase, customers, age(e.Status.CompletionTime, now)}
		},
	},
}

func runColumns(r *retentionv1.CampaignRun) []string {
	treatment, sent, uplift := "<none>", "<none>", "<none>"
	if r.Status.Audience != nil {
		treatment = strconv.FormatInt(r.Status.Audience.Treatment, 10)
	}
	if r.Status.Delivery != nil {
		sent = strconv.FormatInt(r.Status.Delivery.Sent, 10)
	}
	if m := r.Status.Measurement; m != nil && m.Uplift != nil {
		uplift = m.Uplift.PercentagePoints + "pp [" + m.Uplift.Lower + ", " + m.Uplift.Upper + "]"
	}
	phase := string(r.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	return []string{r.Spec.CampaignRef.Name, phase, treatment, sent, uplift}
}

func kindByName(name string) *kind {
	name = strings.ToLower(name)
	for _, k := range kinds {
		for _, n := range k.names {
			if n == name {
				return k
			}
		}
	}
	return nil
}

func kindByKind(k string) *kind {
	for _, kk := range kinds {
		if kk.Kind == k {
			return kk
		}
	}
	return nil
}

func conditionsOf(o client.Object) []metav1.Condition {
	if h, ok := o.(interface{ GetConditions() *[]metav1.Condition }); ok {
		return *h.GetConditions()
	}
	return nil
}

// readyColumns are READY and REASON: the Ready condition's status and
// reason, as the CRDs' printer columns show them.
func readyColumns(o client.Object) []string {
	c := apimeta.FindStatusCondition(conditionsOf(o), retentionv1.ConditionReady)
	if c == nil {
		return []string{"Unknown", "<none>"}
	}
	return []string{string(c.Status), orNone(c.Reason)}
}

// statusSelector filters on a condition, like flux's --status-selector:
// Type=Status matches objects that have the condition with that status;
// Type!=Status matches the others, those without the condition included.
// Type and status compare case-insensitively.
type statusSelector struct {
	typ, status string
	negate      bool
}

func parseStatusSelector(s string) (*statusSelector, error) {
	if s == "" {
		return nil, nil
	}
	sel := &statusSelector{}
	var ok bool
	if sel.typ, sel.status, ok = strings.Cut(s, "!="); ok {
		sel.negate = true
	} else if sel.typ, sel.status, ok = strings.Cut(s, "="); !ok {
		return nil, usageErrorf("expected --status-selector as Type=Status or Type!=Status, e.g. Ready!=True, not %q", s)
	}
	sel.typ, sel.status = strings.TrimSpace(sel.typ), strings.TrimSpace(strings.TrimPrefix(sel.status, "="))
	if sel.typ == "" || sel.status == "" {
		return nil, usageErrorf("expected --status-selector as Type=Status or Type!=Status, e.g. Ready!=True, not %q", s)
	}
	return sel, nil
}

func (s *statusSelector) matches(conds []metav1.Condition) bool {
	if s == nil {
		return true
	}
	for _, c := range conds {
		if strings.EqualFold(c.Type, s.typ) {
			return strings.EqualFold(string(c.Status), s.status) != s.negate
		}
	}
	return s.negate
}

func (e *Env) get(ctx context.Context, args []string) error {
	f := e.newFlags("get")
	var all bool
	var selector, labels string
	f.BoolVar(&all, "all-namespaces", false, "list across all namespaces")
	f.BoolVar(&all, "A", false, "shorthand for --all-namespaces")
	f.StringVar(&selector, "status-selector", "", "keep objects whose condition matches Type=Status or Type!=Status, e.g. Ready!=True")
	f.StringVar(&labels, "selector", "", "label selector")
	f.StringVar(&labels, "l", "", "shorthand for --selector")
	out := outputFlag(f, "table")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return usageErrorf("usage: kubectl retention get sources|segments|channels|campaigns|runs [NAME]")
	}
	k := kindByName(pos[0])
	if k == nil {
		return usageErrorf("unknown kind %q (want sources, segments, channels, campaigns or runs)", pos[0])
	}
	if err := checkOutput(*out, "table", "wide", "json", "yaml", "name"); err != nil {
		return err
	}
	sel, err := parseStatusSelector(selector)
	if err != nil {
		return err
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(conn.Namespace))
	}
	if labels != "" {
		ls, err := metav1.ParseToLabelSelector(labels)
		if err != nil {
			return usageErrorf("--selector: %v", err)
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return usageErrorf("--selector: %v", err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: s})
	}
	list := k.newList()
	if err := conn.Client.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("listing %s: %w", k.resource, err)
	}
	objs, err := apimeta.ExtractList(list)
	if err != nil {
		return err
	}
	var items []client.Object
	for _, ro := range objs {
		o := ro.(client.Object)
		if len(pos) == 2 && o.GetName() != pos[1] {
			continue
		}
		if !sel.matches(conditionsOf(o)) {
			continue
		}
		setGVK(o, k.Kind)
		items = append(items, o)
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].GetNamespace() != items[j].GetNamespace() {
			return items[i].GetNamespace() < items[j].GetNamespace()
		}
		return items[i].GetName() < items[j].GetName()
	})
	switch *out {
	case "json", "yaml":
		return printObject(e.Stdout, *out, map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{}})
	case "name":
		for _, o := range items {
			fmt.Fprintf(e.Stdout, "%s.%s/%s\n", strings.ToLower(k.Kind), retentionv1.GroupVersion.Group, o.GetName())
		}
		return nil
	}
	if len(items) == 0 {
		if len(pos) == 2 {
			return fmt.Errorf("%s %q not found in namespace %q", k.Kind, pos[1], conn.Namespace)
		}
		if all {
			fmt.Fprintln(e.Stderr, "No resources found")
		} else {
			fmt.Fprintf(e.Stderr, "No resources found in %s namespace.\n", conn.Namespace)
		}
		return nil
	}
	now := e.Now()
	header := []string{"NAME", "READY", "REASON"}
	header = append(header, k.columns...)
	header = append(header, "AGE")
	if *out == "wide" {
		header = append(header, "MESSAGE")
	}
	if all {
		header = append([]string{"NAMESPACE"}, header...)
	}
	rows := [][]string{header}
	for _, o := range items {
		row := []string{o.GetName()}
		row = append(row, readyColumns(o)...)
		row = append(row, k.row(o, now)...)
		row = append(row, age(&metav1.Time{Time: o.GetCreationTimestamp().Time}, now))
		if *out == "wide" {
			msg := ""
			if c := apimeta.FindStatusCondition(conditionsOf(o), retentionv1.ConditionReady); c != nil {
				msg = c.Message
			}
			row = append(row, msg)
		}
		if all {
			row = append([]string{o.GetNamespace()}, row...)
		}
		rows = append(rows, row)
	}
	return printTable(e.Stdout, rows)
}

func setGVK(o client.Object, kind string) {
	o.GetObjectKind().SetGroupVersionKind(retentionv1.GroupVersion.WithKind(kind))
}

// printTable prints rows as kubectl does (tab-separated, padded by 3).
func printTable(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func printObject(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	default:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}

func age(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
