package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// suspend sets spec.suspend of a campaign or a source with a JSON merge
// patch (flux suspend/resume).
func (e *Env) suspend(ctx context.Context, args []string, suspend bool) error {
	verb := "resume"
	if suspend {
		verb = "suspend"
	}
	f := e.newFlags(verb)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErrorf("usage: kubectl retention %s campaign|source NAME", verb)
	}
	k := kindByName(pos[0])
	if k == nil || (k.Kind != "Campaign" && k.Kind != "CustomerSource") {
		return usageErrorf("%s works on a campaign or a source, not %q", verb, pos[0])
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	obj := k.newObj()
	obj.SetNamespace(conn.Namespace)
	obj.SetName(pos[1])
	patch := fmt.Sprintf(`{"spec":{"suspend":%t}}`, suspend)
	if err := conn.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s %q not found in namespace %q", k.Kind, pos[1], conn.Namespace)
		}
		return err
	}
	done := "resumed"
	if suspend {
		done = "suspended"
	}
	fmt.Fprintf(e.Stdout, "%s.%s/%s %s\n", strings.ToLower(k.Kind), retentionv1.GroupVersion.Group, pos[1], done)
	return nil
}

// run creates an ad-hoc CampaignRun for a campaign, as a person does with
// `kubectl apply` (spec.campaignRef and spec.scheduledTime now), and with
// --wait follows it until it has sent (phase Measuring or Succeeded) or,
// with --for measured, until it has succeeded.
func (e *Env) run(ctx context.Context, args []string) error {
	f := e.newFlags("run")
	var wait bool
	var timeout time.Duration
	var until, name string
	f.BoolVar(&wait, "wait", false, "wait until the run has finished; the exit code says how it ended")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits (exit code 3 after it)")
	f.StringVar(&until, "for", "sent", "with --wait, what to wait for: sent (phase Measuring or Succeeded) or measured (phase Succeeded, after the conversion window)")
	f.StringVar(&name, "name", "", "the run's name (default: CAMPAIGN-manual-<random>)")
	out := outputFlag(f, "name")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || kindByName(pos[0]) == nil || kindByName(pos[0]).Kind != "Campaign" {
		return usageErrorf("usage: kubectl retention run campaign NAME [--wait] [--timeout 10m]")
	}
	if until != "sent" && until != "measured" {
		return usageErrorf("--for is sent or measured, not %q", until)
	}
	if err := checkOutput(*out, "name", "json", "yaml"); err != nil {
		return err
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	var camp retentionv1.Campaign
	if err := conn.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: pos[1]}, &camp); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("Campaign %q not found in namespace %q", pos[1], conn.Namespace)
		}
		return err
	}
	if camp.Spec.Suspend {
		fmt.Fprintf(e.Stderr, "warning: campaign %s is suspended\n", camp.Name)
	}
	run := &retentionv1.CampaignRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: camp.Namespace,
			Labels:    map[string]string{LabelCampaign: camp.Name},
		},
		Spec: retentionv1.CampaignRunSpec{
			CampaignRef:   retentionv1.LocalObjectReference{Name: camp.Name},
			ScheduledTime: metav1.Time{Time: e.Now().UTC().Truncate(time.Second)},
		},
	}
	if name != "" {
		run.Name = name
	} else {
		run.GenerateName = camp.Name + "-manual-"
	}
	if err := conn.Client.Create(ctx, run); err != nil {
		return fmt.Errorf("creating the run: %w", err)
	}
	setGVK(run, "CampaignRun")
	if *out == "name" {
		fmt.Fprintf(e.Stdout, "campaignrun.%s/%s created\n", retentionv1.GroupVersion.Group, run.Name)
	}
	if wait {
		run, err = e.waitRun(ctx, conn.Client, run, timeout, until == "measured")
		if err != nil && run == nil {
			return err
		}
		if *out != "name" {
			if perr := printObject(e.Stdout, *out, run); perr != nil {
				return perr
			}
		}
		return err
	}
	if *out != "name" {
		return printObject(e.Stdout, *out, run)
	}
	return nil
}

// waitRun polls the run until its phase is final, or Measuring when
// measured is false. It returns nil for a run that succeeded (or is
// measuring), an error for a failed or cancelled run, and a codeError with
// ExitTimeout when the time is up.
func (e *Env) waitRun(ctx context.Context, c client.Client, run *retentionv1.CampaignRun, timeout time.Duration, measured bool) (*retentionv1.CampaignRun, error) {
	o, err := e.poll(ctx, c, run, "run", timeout, func() client.Object { return &retentionv1.CampaignRun{} },
		func(o client.Object) (string, bool, error) {
			run := o.(*retentionv1.CampaignRun)
			setGVK(run, "CampaignRun")
			phase := run.Status.Phase
			if phase == "" {
				phase = retentionv1.RunPending
			}
			line := "phase " + string(phase)
			switch phase {
			case retentionv1.RunSucceeded:
				return line, true, nil
			case retentionv1.RunMeasuring:
				return line, !measured, nil
			case retentionv1.RunFailed, retentionv1.RunCancelled:
				return line, true, fmt.Errorf("run %s %s: %s", run.Name, strings.ToLower(string(phase)), readyMessage(run))
			}
			return line, false, nil
		}, func(o client.Object) string {
			run := o.(*retentionv1.CampaignRun)
			phase := run.Status.Phase
			if phase == "" {
				phase = retentionv1.RunPending
			}
			return phaseLine(run, phase)
		})
	if o == nil {
		return nil, err
	}
	return o.(*retentionv1.CampaignRun), err
}

// poll reads the object every e.Poll until check says it is done (with
// check's error), it is deleted, or timeout passes (a codeError with
// ExitTimeout). Each time check's state changes, progress's line goes to
// stderr as "<what> <name>: <line>". It returns the object last read.
func (e *Env) poll(ctx context.Context, c client.Client, obj client.Object, what string, timeout time.Duration,
	newObj func() client.Object, check func(client.Object) (state string, done bool, err error), progress func(client.Object) string) (client.Object, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := client.ObjectKeyFromObject(obj)
	tick := time.NewTicker(e.Poll)
	defer tick.Stop()
	last := "phase -"
	for {
		cur := newObj()
		err := c.Get(ctx, key, cur)
		switch {
		case err == nil:
			obj = cur
			state, done, cerr := check(cur)
			if state != last {
				fmt.Fprintf(e.Stderr, "%s %s: %s\n", what, key.Name, progress(cur))
				last = state
			}
			if done {
				return obj, cerr
			}
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("%s %s was deleted while waiting", what, key.Name)
		case ctx.Err() == nil:
			fmt.Fprintf(e.Stderr, "warning: reading %s %s: %v\n", what, key.Name, err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return obj, &codeError{code: ExitTimeout, msg: fmt.Sprintf("timed out after %s waiting for %s %s (%s)", timeout, what, key.Name, last)}
			}
			return obj, ctx.Err()
		case <-tick.C:
		}
	}
}

func phaseLine(run *retentionv1.CampaignRun, phase retentionv1.RunPhase) string {
	s := string(phase)
	if a := run.Status.Audience; a != nil {
		s += fmt.Sprintf(", treatment %d, holdout %d", a.Treatment, a.Holdout)
	}
	if d := run.Status.Delivery; d != nil {
		s += fmt.Sprintf(", sent %d, failed %d", d.Sent, d.Failed)
	}
	return s
}

func readyMessage(o client.Object) string {
	if c := apimeta.FindStatusCondition(conditionsOf(o), retentionv1.ConditionReady); c != nil {
		return c.Reason + ": " + c.Message
	}
	return "no Ready condition"
}

// check verifies the install like `cmctl check api`: the six kinds are
// served by the API server (discovery) and can be listed with the
// caller's credentials. With --wait it retries until that holds.
func (e *Env) check(ctx context.Context, args []string) error {
	f := e.newFlags("check")
	var wait time.Duration
	f.DurationVar(&wait, "wait", 0, "retry until the API is ready or this much time has passed")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "api" {
		return usageErrorf("usage: kubectl retention check api [--wait 1m]")
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		err = checkAPI(ctx, conn)
		if err == nil {
			fmt.Fprintln(e.Stdout, "The retention API is ready")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready: %w", err)
		}
		fmt.Fprintf(e.Stderr, "Not ready: %v\n", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.Poll):
		}
	}
}

func checkAPI(ctx context.Context, conn *Conn) error {
	dc, err := discovery.NewDiscoveryClientForConfig(conn.Config)
	if err != nil {
		return err
	}
	gv := retentionv1.GroupVersion.String()
	res, err := dc.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return fmt.Errorf("the API server does not serve %s: %w", gv, err)
	}
	served := map[string]bool{}
	for _, r := range res.APIResources {
		served[r.Kind] = true
	}
	var missing []string
	for _, k := range kinds {
		if !served[k.Kind] {
			missing = append(missing, k.Kind)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s does not serve %s (are the CRDs installed and up to date?)", gv, strings.Join(missing, ", "))
	}
	for _, k := range kinds {
		if err := conn.Client.List(ctx, k.newList(), client.InNamespace(conn.Namespace), client.Limit(1)); err != nil {
			return fmt.Errorf("listing %s: %w", k.resource, err)
		}
	}
	return nil
}

// runRequest is a verb on one CampaignRun that asks the operator for
// something through an annotation (abort, retry): the run read, the
// connection, and the verb's --wait and --timeout.
type runRequest struct {
	c       client.Client
	run     *retentionv1.CampaignRun
	wait    bool
	timeout time.Duration
}

// parseRunRequest parses `VERB run NAME [--wait] [--timeout]` and reads the run.
func (e *Env) parseRunRequest(ctx context.Context, verb string, args []string, waitFor string, timeout time.Duration) (*runRequest, error) {
	f := e.newFlags(verb)
	req := &runRequest{}
	f.BoolVar(&req.wait, "wait", false, "wait until the run has "+waitFor)
	f.DurationVar(&req.timeout, "timeout", timeout, "how long --wait waits (exit code 3 after it)")
	pos, err := f.parse(args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 2 || kindByName(pos[0]) == nil || kindByName(pos[0]).Kind != "CampaignRun" {
		return nil, usageErrorf("usage: kubectl retention %s run NAME [--wait] [--timeout %s]", verb, timeout)
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return nil, err
	}
	req.c, req.run = conn.Client, &retentionv1.CampaignRun{}
	if err := req.c.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: pos[1]}, req.run); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("CampaignRun %q not found in namespace %q", pos[1], conn.Namespace)
		}
		return nil, err
	}
	return req, nil
}

// annotate sets one annotation of the run (a merge patch) and says so.
func (e *Env) annotate(ctx context.Context, req *runRequest, key, value, done string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	if err := req.c.Patch(ctx, req.run, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("annotating run %s: %w", req.run.Name, err)
	}
	fmt.Fprintf(e.Stdout, "campaignrun.%s/%s %s\n", retentionv1.GroupVersion.Group, req.run.Name, done)
	return nil
}

// follow polls the run until check says it is done (see poll).
func (e *Env) follow(ctx context.Context, req *runRequest, check func(*retentionv1.CampaignRun) (string, bool, error)) error {
	_, err := e.poll(ctx, req.c, req.run, "run", req.timeout, func() client.Object { return &retentionv1.CampaignRun{} },
		func(o client.Object) (string, bool, error) { return check(o.(*retentionv1.CampaignRun)) },
		func(o client.Object) string {
			r := o.(*retentionv1.CampaignRun)
			return phaseLine(r, r.Status.Phase)
		})
	return err
}

// abort cancels an active run (the operator's cancellation, as for a run
// replaced by a newer one): its pending targets are skipped, what a
// runner already holds is sent. With --wait it follows the run until it
// has ended.
func (e *Env) abort(ctx context.Context, args []string) error {
	req, err := e.parseRunRequest(ctx, "abort", args, "ended", 5*time.Minute)
	if err != nil {
		return err
	}
	run := req.run
	if run.Status.Phase.Finished() {
		return fmt.Errorf("run %s has already ended (%s)", run.Name, run.Status.Phase)
	}
	if by := run.Annotations[retentionv1.CancelRequestedAnnotation]; by != "" {
		fmt.Fprintf(e.Stderr, "run %s: a cancellation was already requested (%s)\n", run.Name, by)
	} else if err := e.annotate(ctx, req, retentionv1.CancelRequestedAnnotation, retentionv1.AbortRequest, "abort requested"); err != nil {
		return err
	}
	if !req.wait {
		return nil
	}
	return e.follow(ctx, req, func(r *retentionv1.CampaignRun) (string, bool, error) {
		return "phase " + string(r.Status.Phase), r.Status.Phase.Finished(), nil
	})
}

// retry asks the operator to send a Failed run's unsent shards once more
// (one more Job). With --wait it follows the run until it has sent
// (Measuring or Succeeded: exit 0) or failed again (exit 1).
func (e *Env) retry(ctx context.Context, args []string) error {
	req, err := e.parseRunRequest(ctx, "retry", args, "sent or failed again", 10*time.Minute)
	if err != nil {
		return err
	}
	run := req.run
	if run.Status.Phase != retentionv1.RunFailed {
		return fmt.Errorf("run %s is %s: only a Failed run is retried", run.Name, orNone(string(run.Status.Phase)))
	}
	request := e.Now().UTC().Format(time.RFC3339Nano)
	if err := e.annotate(ctx, req, retentionv1.RetryRequestedAnnotation, request, "retry requested"); err != nil {
		return err
	}
	if !req.wait {
		return nil
	}
	return e.follow(ctx, req, func(r *retentionv1.CampaignRun) (string, bool, error) {
		if r.Status.LastHandledRetryAt != request {
			return "requested", false, nil
		}
		state := "phase " + string(r.Status.Phase)
		switch r.Status.Phase {
		case retentionv1.RunMeasuring, retentionv1.RunSucceeded:
			return state, true, nil
		case retentionv1.RunFailed, retentionv1.RunCancelled:
			return state, true, fmt.Errorf("run %s %s: %s", r.Name, strings.ToLower(string(r.Status.Phase)), readyMessage(r))
		}
		return state, false, nil
	})
}
