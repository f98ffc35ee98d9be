package plugin

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// SegmentPreview is what `preview segment` shows: the rule's audience on
// the live snapshot, and how it differs from the current members of the
// Segment it would replace.
type SegmentPreview struct {
	// Segment is the name in the manifest.
	Segment string `json:"segment,omitempty"`
	// Against is the Segment the entering and leaving counts compare with
	// ("" when there is none, or it was never evaluated).
	Against       string `json:"against,omitempty"`
	Source        string `json:"source"`
	Rule          string `json:"rule"`
	SnapshotID    int64  `json:"snapshotID"`
	Size          int64  `json:"size"`
	SharePercent  string `json:"sharePercent,omitempty"`
	ExpectedValue string `json:"expectedValue,omitempty"`
	// CurrentSize is the size of Against now; Entering and Leaving count
	// the customers the rule would add to it and remove from it.
	CurrentSize int64 `json:"currentSize,omitempty"`
	Entering    int64 `json:"entering"`
	Leaving     int64 `json:"leaving"`
}

// preview evaluates a Segment manifest on the live snapshot through the
// API only: it creates a temporary Segment labelled retention.dev/preview
// (campaigns refuse it) that the operator evaluates against a copy of the
// named Segment's current membership, reads its status, and deletes it.
func (e *Env) preview(ctx context.Context, args []string) error {
	f := e.newFlags("preview")
	var file, against string
	var timeout time.Duration
	f.StringVar(&file, "filename", "", "the Segment manifest to evaluate")
	f.StringVar(&file, "f", "", "shorthand for --filename")
	f.StringVar(&against, "against", "", "the Segment whose current members the entering and leaving counts compare with (default: the manifest's name)")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the evaluation")
	out := outputFlag(f, "table")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || kindByName(pos[0]) == nil || kindByName(pos[0]).Kind != "Segment" || file == "" {
		return usageErrorf("usage: kubectl retention preview segment -f FILE [--against NAME] [-o table|json|yaml]")
	}
	if err := checkOutput(*out, "table", "json", "yaml"); err != nil {
		return err
	}
	want, err := readSegment(file)
	if err != nil {
		return err
	}
	if f.conn.Namespace == "" && want.Namespace != "" {
		f.conn.Namespace = want.Namespace
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	if against == "" {
		against = want.Name
	}
	res, err := e.evaluatePreview(ctx, conn, want, against, timeout)
	if err != nil {
		return err
	}
	if *out != "table" {
		return printObject(e.Stdout, *out, res)
	}
	rows := [][]string{{"SOURCE", "SIZE", "SHARE", "EXPECTED VALUE", "AGAINST", "CURRENT SIZE", "ENTERING", "LEAVING"}}
	cur, ent, lea := "<none>", "<none>", "<none>"
	if res.Against != "" {
		cur, ent, lea = strconv.FormatInt(res.CurrentSize, 10), strconv.FormatInt(res.Entering, 10), strconv.FormatInt(res.Leaving, 10)
	}
	share := "<none>"
	if res.SharePercent != "" {
		share = res.SharePercent + "%"
	}
	rows = append(rows, []string{res.Source, strconv.FormatInt(res.Size, 10), share, orNone(res.ExpectedValue), orNone(res.Against), cur, ent, lea})
	return printTable(e.Stdout, rows)
}

func readSegment(path string) (*retentionv1.Segment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var seg retentionv1.Segment
	if err := yaml.UnmarshalStrict(b, &seg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if seg.Kind != "Segment" || seg.APIVersion != retentionv1.GroupVersion.String() {
		return nil, fmt.Errorf("%s: want a %s Segment, found %s %s", path, retentionv1.GroupVersion, seg.APIVersion, seg.Kind)
	}
	return &seg, nil
}

// evaluatePreview creates the preview Segment, waits for its evaluation,
// and deletes it whatever happens.
func (e *Env) evaluatePreview(ctx context.Context, conn *Conn, want *retentionv1.Segment, against string, timeout time.Duration) (*SegmentPreview, error) {
	c := conn.Client
	res := &SegmentPreview{Segment: want.Name, Source: want.Spec.SourceRef.Name, Rule: want.Spec.Rule}
	if against != "" {
		var cur retentionv1.Segment
		switch err := c.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: against}, &cur); {
		case err == nil && cur.Status.SnapshotID != 0:
			res.Against, res.CurrentSize = against, cur.Status.Size
		case err != nil && !apierrors.IsNotFound(err):
			return nil, err
		}
	}
	base := want.Name
	if base == "" {
		base = "segment"
	}
	seg := &retentionv1.Segment{
		ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, GenerateName: base + "-preview-",
			Labels: map[string]string{retentionv1.PreviewLabel: "true"}},
		Spec: want.Spec,
	}
	if res.Against != "" {
		seg.Annotations = map[string]string{retentionv1.PreviewOfAnnotation: res.Against}
	}
	if err := c.Create(ctx, seg); err != nil {
		return nil, fmt.Errorf("creating the preview Segment: %w", err)
	}
	defer func() {
		// The operator's finalizer drops the preview's membership.
		if err := c.Delete(context.Background(), seg); err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(e.Stderr, "warning: deleting the preview Segment %s: %v\n", seg.Name, err)
		}
	}()
	o, err := e.poll(ctx, c, seg, "preview", timeout, func() client.Object { return &retentionv1.Segment{} },
		func(o client.Object) (string, bool, error) {
			s := o.(*retentionv1.Segment)
			ready := apimeta.FindStatusCondition(s.Status.Conditions, retentionv1.ConditionReady)
			stalled := apimeta.IsStatusConditionTrue(s.Status.Conditions, retentionv1.ConditionStalled)
			switch {
			case ready == nil || ready.ObservedGeneration != s.Generation:
				return "waiting", false, nil
			case ready.Status == metav1.ConditionTrue && s.Status.SnapshotID != 0:
				return "evaluated", true, nil
			case stalled:
				return ready.Reason, true, fmt.Errorf("the rule cannot be evaluated: %s: %s", ready.Reason, ready.Message)
			}
			return ready.Reason, false, nil
		}, func(o client.Object) string { return readyMessage(o) })
	if err != nil {
		return nil, err
	}
	s := o.(*retentionv1.Segment)
	res.SnapshotID, res.Size, res.SharePercent, res.ExpectedValue = s.Status.SnapshotID, s.Status.Size, s.Status.SharePercent, s.Status.ExpectedValue
	if res.Against != "" {
		res.Entering, res.Leaving = s.Status.Entered, s.Status.Exited
	}
	return res, nil
}
