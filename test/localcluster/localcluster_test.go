package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// shared is the cluster TestIndexedJob and TestPodFailurePolicy share (each
// in its own namespace); TestMain stops it.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared cluster: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sharedCluster(t *testing.T) *Cluster {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.c, shared.err = Start(context.Background(), Options{})
		fmt.Fprintf(os.Stderr, "shared cluster started in %v\n", time.Since(start).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("starting the shared cluster: %v", shared.err)
	}
	dumpLogsOnFailure(t, shared.c)
	return shared.c
}

func dumpLogsOnFailure(t *testing.T, c *Cluster) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok"} {
			t.Logf("--- %s.log (tail) ---\n%s", name, tail(c.logPath(name), 15))
		}
	})
}

func clientset(t *testing.T, c *Cluster) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runPods runs a PodRunner for the pods labelled test=name until the test
// ends or the returned func is called.
func runPods(t *testing.T, cs kubernetes.Interface, name string) (stop func()) {
	t.Helper()
	_, stop = startPodRunner(t, cs, name)
	return stop
}

// startPodRunner is runPods that also returns the runner.
func startPodRunner(t *testing.T, cs kubernetes.Interface, name string) (r *PodRunner, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r = &PodRunner{
		Client:   cs,
		Commands: map[string]string{"/bin/sh": "/bin/sh"},
		Selector: labels.SelectorFromSet(labels.Set{"test": name}),
		Log:      testWriter{t},
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("PodRunner.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", b)
	return len(b), nil
}

func namespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func shellJob(name, script string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"test": name}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:    "main",
						Image:   "busybox",
						Command: []string{"/bin/sh"},
						Args:    []string{"-c", script},
					}},
				},
			},
		},
	}
}

func hasCondition(j *batchv1.Job, typ batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if c := &j.Status.Conditions[i]; c.Type == typ && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// waitJob polls the Job until it has a Complete or Failed condition.
func waitJob(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration) *batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && (hasCondition(j, batchv1.JobComplete) != nil || hasCondition(j, batchv1.JobFailed) != nil) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("Job %s/%s did not finish in %v (last: %+v, %v)", ns, name, timeout, j.Status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIndexedJob: the real Job controller runs an Indexed Job whose index 1
// fails once (exit 7) and succeeds on its retry; the Job completes with one
// failed pod, then the TTL-after-finished controller deletes it and the
// garbage collector its pods.
func TestIndexedJob(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	cs := clientset(t, c)
	ctx := context.Background()
	const ns, name = "indexed", "indexed"
	namespace(t, cs, ns)
	mark := filepath.Join(t.TempDir(), "mark")
	_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "mark"},
		StringData: map[string]string{"path": mark},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := shellJob(name, `test "$JOB_COMPLETION_INDEX" != 1 || test -f $MARK || { touch $MARK; exit 7; }`)
	job.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	job.Spec.Completions = ptr.To[int32](3)
	job.Spec.Parallelism = ptr.To[int32](3)
	job.Spec.BackoffLimitPerIndex = ptr.To[int32](1)
	job.Spec.TTLSecondsAfterFinished = ptr.To[int32](0)
	job.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{
		Name:      "MARK",
		ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "mark"}, Key: "path"}},
	}}
	runPods(t, cs, name)
	created, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Watched, not polled: with ttlSecondsAfterFinished 0 the Job is deleted
	// as soon as it has finished.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	w, err := cs.BatchV1().Jobs(ns).Watch(wctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: created.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var finished *batchv1.Job
	deleted := false
	for !deleted {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch ended before the Job was deleted (finished: %v)", finished != nil)
			}
			j, _ := ev.Object.(*batchv1.Job)
			switch {
			case ev.Type == watch.Deleted:
				deleted = true
			case j != nil && finished == nil && (hasCondition(j, batchv1.JobComplete) != nil || hasCondition(j, batchv1.JobFailed) != nil):
				finished = j
				t.Logf("Job finished after %v: %+v", time.Since(start).Round(time.Millisecond), j.Status)
			}
		case <-wctx.Done():
			t.Fatalf("the Job was not finished and deleted in time (finished: %v)", finished != nil)
		}
	}
	if finished == nil {
		t.Fatal("the Job was deleted without being seen finished")
	}
	if hasCondition(finished, batchv1.JobComplete) == nil {
		t.Fatalf("the Job did not complete: %+v", finished.Status)
	}
	if finished.Status.Succeeded != 3 || finished.Status.Failed != 1 {
		t.Errorf("succeeded %d, failed %d; want 3 and 1", finished.Status.Succeeded, finished.Status.Failed)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("index 1's first attempt left no mark: %v", err)
	}
	// The garbage collector deletes the pods (kwok's pod-delete stage
	// removes them once they are marked deleted).
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "test=" + name})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("the Job's pods were not deleted: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("Job and pods deleted after %v", time.Since(start).Round(time.Millisecond))
}

// TestPodFailurePolicy: exit code 3 matches a FailJob rule, so the Job fails
// at once with reason PodFailurePolicy.
func TestPodFailurePolicy(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	cs := clientset(t, c)
	const ns, name = "failjob", "failjob"
	namespace(t, cs, ns)
	job := shellJob(name, "exit 3")
	job.Spec.BackoffLimit = ptr.To[int32](6)
	job.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
		Action:      batchv1.PodFailurePolicyActionFailJob,
		OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3}},
	}}}
	runPods(t, cs, name)
	if _, err := cs.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cs, ns, name, 60*time.Second)
	cond := hasCondition(j, batchv1.JobFailed)
	if cond == nil || cond.Reason != batchv1.JobReasonPodFailurePolicy {
		t.Fatalf("want condition Failed with reason PodFailurePolicy, got %+v", j.Status.Conditions)
	}
	if j.Status.Failed != 1 {
		t.Errorf("failed pods %d, want 1 (no retries)", j.Status.Failed)
	}
	t.Logf("Job failed: %s", cond.Message)
}

// TestParallelClusters: two clusters at once in one process, each running a
// Job; after Stop, none of their processes is left and the temp dirs are
// gone. (Both are started and used here rather than in parallel subtests,
// which -parallel, GOMAXPROCS by default, could run one after the other.)
func TestParallelClusters(t *testing.T) {
	t.Parallel()
	var clusters [2]*Cluster
	var errs [2]error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = Start(context.Background(), Options{Nodes: 2})
		}()
	}
	wg.Wait()
	t.Logf("both started in %v", time.Since(start).Round(time.Millisecond))
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() { _ = c.Stop() })
			dumpLogsOnFailure(t, c)
		}
		if errs[i] != nil {
			t.Fatalf("cluster %d: %v", i, errs[i])
		}
	}
	if clusters[0].Config.Host == clusters[1].Config.Host {
		t.Fatalf("both clusters serve at %s", clusters[0].Config.Host)
	}

	const name = "hello"
	for i, c := range clusters {
		cs := clientset(t, c)
		stopPods := runPods(t, cs, name)
		job := shellJob(name, `echo "hello from $HOSTNAME in cluster `+fmt.Sprint(i)+`"`)
		if _, err := cs.BatchV1().Jobs("default").Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitJob(t, cs, "default", name, 60*time.Second)
		if hasCondition(j, batchv1.JobComplete) == nil {
			t.Fatalf("cluster %d: the Job did not complete: %+v", i, j.Status)
		}
		t.Logf("cluster %d (%s, nodes %v): Job complete", i, c.Config.Host, c.NodeNames)
		stopPods()
	}

	for i, c := range clusters {
		pids := c.Pids()
		if len(pids) != 5 {
			t.Errorf("cluster %d: Pids() = %v, want 5 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)", i, pids)
		}
		stopStart := time.Now()
		if err := c.Stop(); err != nil {
			t.Errorf("cluster %d: Stop: %v", i, err)
		}
		t.Logf("cluster %d stopped in %v", i, time.Since(stopStart).Round(time.Millisecond))
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("cluster %d: process %d is still there after Stop (kill 0: %v)", i, pid, err)
			}
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Errorf("cluster %d: %s is still there after Stop (%v)", i, c.Dir, err)
		}
	}
}

// TestPodKilledAndDeleted: a pod's process SIGKILLed (a crash) fails the
// pod with exit code 137, and a pod deleted while running gets its
// terminal phase as a kubelet writes it (SIGTERM: 143) instead of hanging
// on the Job controller's finalizer; the Job controller replaces both and
// the third pod completes the Job.
func TestPodKilledAndDeleted(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	cs := clientset(t, c)
	const ns, name = "killed", "killed"
	namespace(t, cs, ns)
	dir := t.TempDir()
	// Each attempt counts itself; the third exits 0, the first two wait.
	job := shellJob(name, `n=$(cat `+dir+`/n 2>/dev/null || echo 0); echo $((n+1)) >`+dir+`/n; [ "$n" -ge 2 ] && exit 0; exec sleep 60`)
	job.Spec.BackoffLimit = ptr.To[int32](4)
	// With a pod failure policy (the operator's Jobs have one) the Job
	// controller waits for a deleted pod's terminal phase before it
	// replaces the pod: without a kubelet-like status it would wait forever.
	job.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
		Action:      batchv1.PodFailurePolicyActionFailJob,
		OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}},
	}}}
	r, _ := startPodRunner(t, cs, name)
	ctx := context.Background()
	if _, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := func() string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			for _, k := range r.Running() {
				if strings.HasPrefix(k, ns+"/") {
					return k
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no pod of the Job is running")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := running()
	if !r.Signal(first, syscall.SIGKILL) {
		t.Fatalf("Signal(%s) found no process", first)
	}
	second := running()
	for second == first {
		time.Sleep(100 * time.Millisecond)
		second = running()
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, strings.TrimPrefix(second, ns+"/"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cs, ns, name, 3*time.Minute) // two failures: the Job controller backs off 10 s, then 20 s
	if hasCondition(j, batchv1.JobComplete) == nil || j.Status.Failed != 2 || j.Status.Succeeded != 1 {
		t.Fatalf("Job status %+v, want complete after 2 failed pods", j.Status)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int32{}
	for _, p := range pods.Items {
		if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
			codes[p.Namespace+"/"+p.Name] = cs[0].State.Terminated.ExitCode
		}
	}
	if code, ok := codes[first]; ok && code != 137 {
		t.Errorf("the SIGKILLed pod exited %d, want 137", code)
	}
}
