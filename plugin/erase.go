package plugin

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
)

// erase forgets customers of a source: it puts the ids in a Secret (never
// in the CustomerErasure's spec), creates a CustomerErasure that refers to
// it, makes the erasure the Secret's owner (deleting the erasure deletes
// the Secret, whose data the operator removes anyway), and with --wait
// follows the erasure until it completes or fails.
func (e *Env) erase(ctx context.Context, args []string) error {
	f := e.newFlags("erase")
	var sourceName, fromFile string
	var wait bool
	var timeout time.Duration
	f.StringVar(&sourceName, "source", "", "the CustomerSource whose customers are erased (required)")
	f.StringVar(&fromFile, "from-file", "", "read the customer ids from this file, one per line (- for stdin), which keeps them out of the shell's history")
	f.BoolVar(&wait, "wait", false, "wait until the erasure has completed; the exit code says how it ended")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits (exit code 3 after it)")
	out := outputFlag(f, "name")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || pos[0] != "customer" && pos[0] != "customers" {
		return usageErrorf("usage: kubectl retention erase customer ID... --source NAME [--from-file FILE] [--wait]")
	}
	ids := pos[1:]
	if fromFile != "" {
		more, err := readIDs(fromFile)
		if err != nil {
			return err
		}
		ids = append(ids, more...)
	}
	switch {
	case sourceName == "":
		return usageErrorf("--source is required")
	case len(ids) == 0:
		return usageErrorf("no customer id: give them as arguments or with --from-file")
	}
	if err := checkOutput(*out, "name", "json", "yaml"); err != nil {
		return err
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	c := conn.Client
	var src retentionv1.CustomerSource
	if err := c.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: sourceName}, &src); apierrors.IsNotFound(err) {
		// A deleted source's runs and records outlive it: they are erased.
		fmt.Fprintf(e.Stderr, "warning: CustomerSource %q does not exist in namespace %q (deleted, or a typo?): its runs' targets and records are erased all the same\n", sourceName, conn.Namespace)
	} else if err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, GenerateName: "erase-" + sourceName + "-"},
		Type:       retentionv1.CustomerIDsSecretType,
		Data:       map[string][]byte{"ids": []byte(strings.Join(ids, "\n") + "\n")},
	}
	if err := c.Create(ctx, sec); err != nil {
		return fmt.Errorf("creating the Secret of the ids: %w", err)
	}
	ce := &retentionv1.CustomerErasure{
		ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, Name: sec.Name},
		Spec: retentionv1.CustomerErasureSpec{
			SourceRef:            retentionv1.LocalObjectReference{Name: sourceName},
			CustomerIDsSecretRef: retentionv1.CustomerIDsSecretRef{Name: sec.Name, Key: "ids"},
		},
	}
	if err := c.Create(ctx, ce); err != nil {
		// Nothing refers to the ids: take them back.
		_ = c.Delete(ctx, sec)
		return fmt.Errorf("creating the CustomerErasure: %w", err)
	}
	setGVK(ce, "CustomerErasure")
	owned := sec.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: retentionv1.GroupVersion.String(), Kind: "CustomerErasure", Name: ce.Name, UID: ce.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(false),
	}}
	if err := c.Patch(ctx, owned, client.MergeFrom(sec)); err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(e.Stderr, "warning: the Secret %s is not owned by the erasure (delete it once the erasure completes): %v\n", sec.Name, err)
	}
	if *out == "name" {
		fmt.Fprintf(e.Stdout, "customererasure.%s/%s created (%d customers of source %s)\n", retentionv1.GroupVersion.Group, ce.Name, len(ids), sourceName)
	}
	if wait {
		ce, err = e.waitErasure(ctx, c, ce, timeout)
	}
	if *out != "name" && ce != nil {
		if perr := printObject(e.Stdout, *out, ce); perr != nil {
			return perr
		}
	}
	return err
}

// readIDs reads customer ids, one per line, from a file or stdin ("-").
func readIDs(path string) ([]string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ids: %w", err)
	}
	return store.CustomerIDLines(b), nil
}

// waitErasure polls the erasure until it completes (nil) or fails (an
// error), or the time is up (ExitTimeout).
func (e *Env) waitErasure(ctx context.Context, c client.Client, ce *retentionv1.CustomerErasure, timeout time.Duration) (*retentionv1.CustomerErasure, error) {
	o, err := e.poll(ctx, c, ce, "erasure", timeout, func() client.Object { return &retentionv1.CustomerErasure{} },
		func(o client.Object) (string, bool, error) {
			ce := o.(*retentionv1.CustomerErasure)
			setGVK(ce, "CustomerErasure")
			phase := ce.Status.Phase
			if phase == "" {
				phase = retentionv1.ErasurePending
			}
			line := "phase " + string(phase)
			switch phase {
			case retentionv1.ErasureCompleted:
				return line, true, nil
			case retentionv1.ErasureFailed:
				return line, true, fmt.Errorf("erasure %s failed: %s", ce.Name, readyMessage(ce))
			}
			return line, false, nil
		}, func(o client.Object) string {
			ce := o.(*retentionv1.CustomerErasure)
			phase := ce.Status.Phase
			if phase == "" {
				phase = retentionv1.ErasurePending
			}
			return string(phase) + ": " + readyMessage(ce)
		})
	if o == nil {
		return nil, err
	}
	return o.(*retentionv1.CustomerErasure), err
}
