package localcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

// TestMissingBinary: Start says which binary is missing and to run `make tools`.
func TestMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("want an error naming etcd and `make tools`, got %v", err)
	}
}

// TestStartFailure: a component that dies during Start fails it with the end
// of its log, and what was started is stopped.
func TestStartFailure(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := os.Symlink(filepath.Join(DefaultBinDir(), b), filepath.Join(bin, b)); err != nil {
			t.Fatal(err)
		}
	}
	fake := "#!/bin/sh\necho 'kwok: something is badly wrong' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(bin, "kwok"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "work")
	_, err := Start(context.Background(), Options{BinDir: bin, Dir: dir, StartTimeout: 60 * time.Second})
	if err == nil {
		t.Fatal("Start succeeded with a kwok that exits")
	}
	if !strings.Contains(err.Error(), "kwok exited") || !strings.Contains(err.Error(), "something is badly wrong") {
		t.Fatalf("want kwok's exit and log in the error, got: %v", err)
	}
	t.Logf("Start: %v", err)
	if left := waitGone(childPids(dir), time.Second); len(left) > 0 {
		t.Errorf("processes left after a failed Start: %v", left)
	}
}

// TestUnmappedCommand: a pod whose command is not in PodRunner.Commands
// fails with exit code 127 and says why.
func TestUnmappedCommand(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	cs := clientset(t, c)
	const ns, name = "unmapped", "unmapped"
	namespace(t, cs, ns)
	job := shellJob(name, "true")
	job.Spec.Template.Spec.Containers[0].Command = []string{"/retention-outreach"}
	job.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
		Action:      batchv1.PodFailurePolicyActionFailJob,
		OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{ExitCodeNotMapped}},
	}}}
	job.Spec.BackoffLimit = ptr.To[int32](0)
	runPods(t, cs, name)
	if _, err := cs.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cs, ns, name, 60*time.Second)
	if hasCondition(j, batchv1.JobFailed) == nil {
		t.Fatalf("want the Job Failed, got %+v", j.Status.Conditions)
	}
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.Set{"test": name}.String()})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods: %v, %v", pods, err)
	}
	p := pods.Items[0]
	if p.Status.Phase != corev1.PodFailed || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod status: %+v", p.Status)
	}
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term.ExitCode != ExitCodeNotMapped || !strings.Contains(term.Message, "/retention-outreach") || !strings.Contains(term.Message, "PodRunner.Commands") {
		t.Errorf("terminated: exit code %d, message %q", term.ExitCode, term.Message)
	}
}

func TestExpand(t *testing.T) {
	env := envLookup([]string{"A=1", "B=two"})
	for in, want := range map[string]string{
		"$(A)-$(B)":   "1-two",
		"$(C)":        "$(C)",
		"$$(A)":       "$(A)",
		"$A $HOME":    "$A $HOME",
		"x$":          "x$",
		"$(A":         "$(A",
		`"$JOB" $(B)`: `"$JOB" two`,
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAPIServerRestarted: kube-apiserver stopped and started again on the
// same port. A pod whose process ends while it is down gets its terminal
// status once it is back (the PodRunner retries, as a kubelet would); the
// controller manager, scheduler and kwok reconnect on their own, so that
// Job completes and a Job created afterwards runs too; Stop leaves none of
// the processes behind, the new kube-apiserver included.
func TestAPIServerRestarted(t *testing.T) {
	t.Parallel()
	c, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	dumpLogsOnFailure(t, c)
	cs := clientset(t, c)
	ctx := context.Background()
	const name = "restart"
	r, _ := startPodRunner(t, cs, name)
	gate := filepath.Join(t.TempDir(), "go")
	job := shellJob(name, `while [ ! -e `+gate+` ]; do sleep 0.1; done`)
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); len(r.Running()) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Job's pod is not running")
		}
	}

	before := c.Pids()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server answers after StopAPIServer")
	}
	// The pod's process ends while nobody can write its status.
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(r.Running()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pod's process did not end")
		}
	}
	time.Sleep(3 * time.Second) // a failed status write or two
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, cs, "default", name, 2*time.Minute); hasCondition(j, batchv1.JobComplete) == nil {
		t.Fatalf("the Job whose pod ended during the outage: %+v", j.Status)
	}
	after := shellJob(name+"-after", "true")
	runPods(t, cs, name+"-after")
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, after, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, cs, "default", after.Name, 2*time.Minute); hasCondition(j, batchv1.JobComplete) == nil {
		t.Fatalf("a Job created after the restart: %+v", j.Status)
	}
	if err := c.checkAlive(); err != nil {
		t.Fatalf("a component did not survive the API server's restart: %v", err)
	}

	pids := c.Pids()
	if len(pids) != len(before) || slices.Equal(pids, before) {
		t.Errorf("Pids() = %v after the restart, %v before: want as many, kube-apiserver's new", pids, before)
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for _, pid := range append(before, pids...) {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d is still there after Stop (kill 0: %v)", pid, err)
		}
	}
}
