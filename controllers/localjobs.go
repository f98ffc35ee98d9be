package controllers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// LocalJobsReconciler runs the outreach Jobs' pods as processes on this
// machine: the stand-in for a kubelet and the Job controller in a local
// control plane that has neither (the demo, `--jobs-local-runner`). For
// each index it runs the runner binary with the container's arguments,
// its environment (Secret references resolved) and JOB_COMPLETION_INDEX,
// then writes the Job's status as the Job controller would: Complete when
// every index exited 0, Failed otherwise. Not for a real cluster: there
// the Job controller owns Job status.
type LocalJobsReconciler struct {
	client.Client
	// APIReader reads the Secrets (the cache holds their metadata only).
	APIReader client.Reader
	// Namespace is the jobs namespace (RunnerConfig.JobsNamespace).
	Namespace string
	// Binary is the local path of the runner binary that the container's
	// command (RunnerCommand) stands for.
	Binary string
}

// Reconcile runs a Job that has not finished. controller-runtime never
// reconciles one Job twice at once, RunJob returns only after writing the
// finished status, and the Job is read uncached (the cache may not have
// that status yet), so a Job runs once.
func (r *LocalJobsReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var job batchv1.Job
	if err := r.APIReader.Get(ctx, req.NamespacedName, &job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if finished, _ := jobFinished(&job); finished {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.RunJob(ctx, &job)
}

// RunJob runs every index of an Indexed Job as a local process, at most
// spec.parallelism at once, and writes the Job's final status.
func (r *LocalJobsReconciler) RunJob(ctx context.Context, job *batchv1.Job) error {
	ctr := job.Spec.Template.Spec.Containers[0]
	env, err := r.environment(ctx, job.Namespace, ctr)
	if err != nil {
		return err
	}
	completions := int(deref(job.Spec.Completions, 1))
	parallel := max(int(deref(job.Spec.Parallelism, 1)), 1)
	started := metav1.Now()
	codes := make([]int, completions)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range completions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			codes[i] = r.runIndex(ctx, ctr.Args, env, i)
		}()
	}
	wg.Wait()
	var succeeded, failed []string
	for i, code := range codes {
		if code == 0 {
			succeeded = append(succeeded, fmt.Sprint(i))
		} else {
			failed = append(failed, fmt.Sprint(i))
		}
	}
	log.FromContext(ctx).Info("local Job ran", "job", job.Name, "succeeded", len(succeeded), "failed", len(failed))
	return r.finishJob(ctx, job, started, succeeded, failed)
}

// runIndex runs one index and returns its exit code (-1 when it could
// not start).
func (r *LocalJobsReconciler) runIndex(ctx context.Context, args, env []string, index int) int {
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Env = append(slices.Clip(env), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", index))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stderr, io.MultiWriter(&stderr, os.Stderr)
	if err := cmd.Run(); err != nil {
		log.FromContext(ctx).Info("local Job index failed", "index", index, "error", err.Error(), "stderr", lastLine(stderr.String()))
		if cmd.ProcessState != nil {
			return cmd.ProcessState.ExitCode()
		}
		return -1
	}
	return 0
}

// environment resolves the container's env and envFrom as the kubelet
// would (Secret keys only: that is all outreach Jobs use).
func (r *LocalJobsReconciler) environment(ctx context.Context, ns string, ctr corev1.Container) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for _, from := range ctr.EnvFrom {
		if from.SecretRef == nil {
			continue
		}
		var sec corev1.Secret
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: from.SecretRef.Name}, &sec); err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, from.SecretRef.Name, err)
		}
		for k, v := range sec.Data {
			env = append(env, k+"="+string(v))
		}
	}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			var sec corev1.Secret
			if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &sec); err != nil {
				return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, ref.Name, err)
			}
			env = append(env, e.Name+"="+string(sec.Data[ref.Key]))
		}
	}
	return env, nil
}

// finishJob writes the status the Job controller would write.
func (r *LocalJobsReconciler) finishJob(ctx context.Context, job *batchv1.Job, started metav1.Time, succeeded, failed []string) error {
	now := metav1.Now()
	job.Status.StartTime = &started
	job.Status.Succeeded, job.Status.Failed = int32(len(succeeded)), int32(len(failed))
	job.Status.CompletedIndexes = strings.Join(succeeded, ",")
	cond := func(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: now, LastProbeTime: now}
	}
	if len(failed) == 0 {
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached"), cond(batchv1.JobComplete, "CompletionsReached")}
	} else {
		job.Status.FailedIndexes = ptr.To(strings.Join(failed, ","))
		job.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobFailureTarget, "FailedIndexes"), cond(batchv1.JobFailed, "FailedIndexes")}
	}
	if err := r.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("writing local Job %s status: %w", job.Name, err)
	}
	return nil
}

// SetupWithManager watches the outreach Jobs in the jobs namespace.
func (r *LocalJobsReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&batchv1.Job{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == r.Namespace && o.GetLabels()[labelManagedBy] == managedBy
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Named("localjobs").
		Complete(r)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
