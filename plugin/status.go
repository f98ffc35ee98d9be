package plugin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// LabelCampaign is the label the operator puts on a campaign's runs
// (controllers.labelCampaign).
const LabelCampaign = "retention.dev/campaign"

// maxEvents is how many of the newest Events status shows per object.
const maxEvents = 10

// Event is one Event about an object, as status shows it.
type Event struct {
	Type     string      `json:"type"`
	Reason   string      `json:"reason"`
	Action   string      `json:"action,omitempty"`
	Note     string      `json:"note"`
	From     string      `json:"from,omitempty"`
	Count    int32       `json:"count"`
	LastSeen metav1.Time `json:"lastSeen"`
}

// Related is an object the status report names: found or not.
type Related struct {
	Kind   string        `json:"kind"`
	Name   string        `json:"name"`
	Found  bool          `json:"found"`
	Object client.Object `json:"object,omitempty"`
}

// StatusReport is what `status` prints; -o json|yaml prints it whole.
type StatusReport struct {
	Object    client.Object             `json:"object"`
	Source    *Related                  `json:"source,omitempty"`
	Segment   *Related                  `json:"segment,omitempty"`
	Channel   *Related                  `json:"channel,omitempty"`
	Segments  []retentionv1.Segment     `json:"segments,omitempty"`
	Campaigns []retentionv1.Campaign    `json:"campaigns,omitempty"`
	Runs      []retentionv1.CampaignRun `json:"runs,omitempty"`
	Events    []Event                   `json:"events"`
}

func (e *Env) status(ctx context.Context, args []string) error {
	f := e.newFlags("status")
	out := outputFlag(f, "text")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErrorf("usage: kubectl retention status campaign|source|segment NAME")
	}
	k := kindByName(pos[0])
	if k == nil || (k.Kind != "Campaign" && k.Kind != "CustomerSource" && k.Kind != "Segment") {
		return usageErrorf("status shows a campaign, a source or a segment, not %q", pos[0])
	}
	if err := checkOutput(*out, "text", "json", "yaml"); err != nil {
		return err
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	rep, err := buildReport(ctx, conn, k, pos[1])
	if err != nil {
		return err
	}
	if *out != "text" {
		return printObject(e.Stdout, *out, rep)
	}
	printReport(e.Stdout, rep, e.Now())
	return nil
}

func buildReport(ctx context.Context, conn *Conn, k *kind, name string) (*StatusReport, error) {
	c, ns := conn.Client, conn.Namespace
	obj := k.newObj()
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s %q not found in namespace %q", k.Kind, name, ns)
		}
		return nil, err
	}
	setGVK(obj, k.Kind)
	rep := &StatusReport{Object: obj}
	var err error
	switch o := obj.(type) {
	case *retentionv1.Campaign:
		if rep.Segment, err = related(ctx, c, ns, "Segment", o.Spec.SegmentRef.Name); err != nil {
			return nil, err
		}
		if rep.Channel, err = related(ctx, c, ns, "Channel", o.Spec.ChannelRef.Name); err != nil {
			return nil, err
		}
		var runs retentionv1.CampaignRunList
		if err := c.List(ctx, &runs, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing runs: %w", err)
		}
		for _, r := range runs.Items {
			// The operator labels every run; a run made by hand is labelled
			// by its first reconciliation, so the reference counts too.
			if r.Labels[LabelCampaign] == o.Name || r.Spec.CampaignRef.Name == o.Name {
				setGVK(&r, "CampaignRun")
				rep.Runs = append(rep.Runs, r)
			}
		}
		sort.SliceStable(rep.Runs, func(i, j int) bool {
			return rep.Runs[i].CreationTimestamp.After(rep.Runs[j].CreationTimestamp.Time)
		})
	case *retentionv1.CustomerSource:
		var segs retentionv1.SegmentList
		if err := c.List(ctx, &segs, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing segments: %w", err)
		}
		for _, s := range segs.Items {
			if s.Spec.SourceRef.Name == o.Name {
				setGVK(&s, "Segment")
				rep.Segments = append(rep.Segments, s)
			}
		}
	case *retentionv1.Segment:
		if rep.Source, err = related(ctx, c, ns, "CustomerSource", o.Spec.SourceRef.Name); err != nil {
			return nil, err
		}
		var camps retentionv1.CampaignList
		if err := c.List(ctx, &camps, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing campaigns: %w", err)
		}
		for _, cp := range camps.Items {
			if cp.Spec.SegmentRef.Name == o.Name || suppresses(&cp, o.Name) {
				setGVK(&cp, "Campaign")
				rep.Campaigns = append(rep.Campaigns, cp)
			}
		}
	}
	if rep.Events, err = eventsFor(ctx, c, obj); err != nil {
		return nil, err
	}
	return rep, nil
}

func suppresses(c *retentionv1.Campaign, segment string) bool {
	if c.Spec.Suppress == nil {
		return false
	}
	for _, s := range c.Spec.Suppress.Segments {
		if s.Name == segment {
			return true
		}
	}
	return false
}

func related(ctx context.Context, c client.Client, ns, kindName, name string) (*Related, error) {
	k := kindByKind(kindName)
	obj := k.newObj()
	r := &Related{Kind: kindName, Name: name}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); {
	case apierrors.IsNotFound(err):
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("getting %s %s: %w", kindName, name, err)
	}
	setGVK(obj, kindName)
	r.Found, r.Object = true, obj
	return r, nil
}

// eventsFor lists the events.k8s.io/v1 Events regarding obj (the
// operator's recorder writes that API), newest first, at most maxEvents.
func eventsFor(ctx context.Context, c client.Client, obj client.Object) ([]Event, error) {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		if apierrors.IsForbidden(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing events: %w", err)
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	var evs []Event
	for _, ev := range list.Items {
		r := ev.Regarding
		if r.UID != "" && r.UID != obj.GetUID() {
			continue
		}
		if r.UID == "" && (r.Kind != kind || r.Name != obj.GetName()) {
			continue
		}
		out := Event{Type: ev.Type, Reason: ev.Reason, Action: ev.Action, Note: ev.Note, From: ev.ReportingController, Count: 1}
		switch {
		case ev.Series != nil:
			out.Count = ev.Series.Count
			out.LastSeen = metav1.Time{Time: ev.Series.LastObservedTime.Time}
		case !ev.EventTime.IsZero():
			out.LastSeen = metav1.Time{Time: ev.EventTime.Time}
		case !ev.DeprecatedLastTimestamp.IsZero():
			out.LastSeen = ev.DeprecatedLastTimestamp
		default:
			out.LastSeen = ev.CreationTimestamp
		}
		if ev.DeprecatedCount > out.Count {
			out.Count = ev.DeprecatedCount
		}
		if out.From == "" {
			out.From = ev.DeprecatedSource.Component
		}
		evs = append(evs, out)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].LastSeen.After(evs[j].LastSeen.Time) })
	if len(evs) > maxEvents {
		evs = evs[:maxEvents]
	}
	return evs, nil
}

// printReport prints the report in the shape of `cmctl status certificate`:
// the object, its conditions, what it refers to and what refers to it,
// each with its Ready condition, then the Events.
func printReport(w io.Writer, rep *StatusReport, now time.Time) {
	o := rep.Object
	kind := o.GetObjectKind().GroupVersionKind().Kind
	fmt.Fprintf(w, "Name: %s\n", o.GetName())
	fmt.Fprintf(w, "Namespace: %s\n", o.GetNamespace())
	fmt.Fprintf(w, "Kind: %s\n", kind)
	fmt.Fprintf(w, "Created at: %s (%s ago)\n", o.GetCreationTimestamp().UTC().Format(time.RFC3339), age(ptrTime(o.GetCreationTimestamp()), now))
	switch ob := o.(type) {
	case *retentionv1.Campaign:
		sched := ob.Spec.Schedule
		if sched == "" {
			sched = string(ob.Spec.Trigger)
		}
		fmt.Fprintf(w, "Schedule: %s\n", orNone(sched))
		fmt.Fprintf(w, "Suspended: %t\n", ob.Spec.Suspend)
		if ob.Spec.DryRun {
			fmt.Fprintln(w, "Dry run: true")
		}
		st := ob.Status
		fmt.Fprintf(w, "Last schedule: %s\n", timeAndAge(st.LastScheduleTime, now))
		fmt.Fprintf(w, "Next schedule: %s\n", timeAndAge(st.NextScheduleTime, now))
		if len(st.Active) > 0 {
			var names []string
			for _, a := range st.Active {
				names = append(names, a.Name)
			}
			fmt.Fprintf(w, "Active runs: %s\n", strings.Join(names, ", "))
		}
		if t := st.Totals; t != nil {
			fmt.Fprintf(w, "Totals: runs %d, treatment %d, holdout %d, sent %d, failed %d\n", t.Runs, t.Treatment, t.Holdout, t.Sent, t.Failed)
		}
		printMeasurement(w, "", st.Measurement)
	case *retentionv1.CustomerSource:
		st := ob.Status
		model := "<none>"
		if st.Model != nil && st.Model.Selected != "" {
			model = st.Model.Selected
		}
		fmt.Fprintf(w, "Suspended: %t\n", ob.Spec.Suspend)
		fmt.Fprintf(w, "Customers: %d, transactions: %d, rejected rows: %d\n", st.Customers, st.Transactions, st.RejectedRows)
		fmt.Fprintf(w, "Model: %s\n", model)
		fmt.Fprintf(w, "Last scored: %s\n", timeAndAge(st.LastScoredTime, now))
	case *retentionv1.Segment:
		st := ob.Status
		fmt.Fprintf(w, "Rule: %s\n", ob.Spec.Rule)
		share := ""
		if st.SharePercent != "" {
			share = " (" + st.SharePercent + "% of the source)"
		}
		fmt.Fprintf(w, "Size: %d%s, entered %d, exited %d\n", st.Size, share, st.Entered, st.Exited)
		if st.ExpectedValue != "" {
			fmt.Fprintf(w, "Expected value: %s\n", st.ExpectedValue)
		}
		fmt.Fprintf(w, "Last evaluated: %s\n", timeAndAge(st.LastEvaluatedTime, now))
	}
	printConditions(w, "", conditionsOf(o))

	for _, r := range []*Related{rep.Source, rep.Segment, rep.Channel} {
		if r == nil {
			continue
		}
		fmt.Fprintf(w, "%s:\n", r.Kind)
		fmt.Fprintf(w, "  Name: %s\n", r.Name)
		if !r.Found {
			fmt.Fprintf(w, "  Not found\n")
			continue
		}
		if s, ok := r.Object.(*retentionv1.Segment); ok {
			fmt.Fprintf(w, "  Size: %d\n", s.Status.Size)
		}
		printConditions(w, "  ", conditionsOf(r.Object))
	}
	if _, ok := o.(*retentionv1.CustomerSource); ok {
		rows := [][]string{{"NAME", "READY", "REASON", "SIZE", "AGE"}}
		for i := range rep.Segments {
			s := &rep.Segments[i]
			rows = append(rows, append(append([]string{s.Name}, readyColumns(s)...), fmt.Sprint(s.Status.Size), age(ptrTime(s.CreationTimestamp), now)))
		}
		printSection(w, "Segments", rows)
	}
	if _, ok := o.(*retentionv1.Segment); ok {
		rows := [][]string{{"NAME", "READY", "REASON", "CHANNEL", "SUSPENDED", "AGE"}}
		for i := range rep.Campaigns {
			c := &rep.Campaigns[i]
			rows = append(rows, append(append([]string{c.Name}, readyColumns(c)...), c.Spec.ChannelRef.Name, fmt.Sprint(c.Spec.Suspend), age(ptrTime(c.CreationTimestamp), now)))
		}
		printSection(w, "Campaigns", rows)
	}
	if _, ok := o.(*retentionv1.Campaign); ok {
		rows := [][]string{{"NAME", "PHASE", "READY", "REASON", "TREATMENT", "SENT", "UPLIFT", "JOB", "AGE"}}
		for i := range rep.Runs {
			r := &rep.Runs[i]
			cols := runColumns(r)
			job := "<none>"
			if r.Status.JobRef != nil {
				job = r.Status.JobRef.Namespace + "/" + r.Status.JobRef.Name
			}
			ready := readyColumns(r)
			rows = append(rows, []string{r.Name, cols[1], ready[0], ready[1], cols[2], cols[3], cols[4], job, age(ptrTime(r.CreationTimestamp), now)})
		}
		printSection(w, "Runs", rows)
	}
	if len(rep.Events) == 0 {
		fmt.Fprintln(w, "Events: <none>")
		return
	}
	rows := [][]string{{"TYPE", "REASON", "AGE", "FROM", "MESSAGE"}}
	for _, ev := range rep.Events {
		a := age(&ev.LastSeen, now)
		if ev.Count > 1 {
			a += fmt.Sprintf(" (x%d)", ev.Count)
		}
		rows = append(rows, []string{ev.Type, ev.Reason, a, ev.From, ev.Note})
	}
	printSection(w, "Events", rows)
}

func printSection(w io.Writer, title string, rows [][]string) {
	if len(rows) <= 1 {
		fmt.Fprintf(w, "%s: <none>\n", title)
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for i := range rows {
		rows[i][0] = "  " + rows[i][0]
	}
	_ = printTable(w, rows)
}

func printConditions(w io.Writer, indent string, conds []metav1.Condition) {
	if len(conds) == 0 {
		fmt.Fprintf(w, "%sConditions: <none>\n", indent)
		return
	}
	fmt.Fprintf(w, "%sConditions:\n", indent)
	for _, c := range conds {
		fmt.Fprintf(w, "%s  %s: %s, Reason: %s, Message: %s\n", indent, c.Type, c.Status, c.Reason, c.Message)
	}
}

func printMeasurement(w io.Writer, indent string, m *retentionv1.Measurement) {
	if m == nil {
		return
	}
	state := "interim"
	if m.Final {
		state = "final"
	}
	fmt.Fprintf(w, "%sMeasurement (%s): treatment %d/%d converted, holdout %d/%d", indent, state,
		m.Treatment.Converted, m.Treatment.Customers, m.Holdout.Converted, m.Holdout.Customers)
	if u := m.Uplift; u != nil {
		fmt.Fprintf(w, ", uplift %spp [%s, %s], p=%s", u.PercentagePoints, u.Lower, u.Upper, u.PValue)
	}
	if m.Verdict != "" {
		fmt.Fprintf(w, ": %s", m.Verdict)
	}
	fmt.Fprintln(w)
}

func timeAndAge(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	if t.After(now) {
		return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), age(&metav1.Time{Time: now}, t.Time))
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), age(t, now))
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }
