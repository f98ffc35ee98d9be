package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// JobCompletionIndexAnnotation is the annotation the Job controller puts the
// completion index of an Indexed Job's pod in.
const JobCompletionIndexAnnotation = "batch.kubernetes.io/job-completion-index"

// ExitCodeNotMapped is the exit code of a pod whose command PodRunner.Commands
// does not map (a shell's "command not found").
const ExitCodeNotMapped = 127

// ExitCodeConfigError is the exit code of a pod whose environment could not
// be resolved (a missing Secret or ConfigMap, an unsupported field).
const ExitCodeConfigError = 128

// PodRunner plays the container runtime of the kwok nodes: it runs each
// Running pod's first container as a local process and writes the outcome to
// the pod's status (phase Succeeded or Failed, state.terminated.exitCode), so
// the Job controller sees real completions and exit codes.
type PodRunner struct {
	// Client talks to the cluster (e.g. kubernetes.NewForConfigOrDie(c.Config)).
	Client kubernetes.Interface
	// Commands maps a container's command (its command[0]) to a local
	// executable, e.g. "/retention-outreach" → "bin/retention-outreach".
	// A pod whose command is not mapped fails with exit code 127.
	Commands map[string]string
	// Selector picks the pods to run; nil runs every pod on a kwok node.
	Selector labels.Selector
	// Log receives the processes' output (each line prefixed with the pod's
	// namespace/name) and what the runner does; nil discards it.
	Log io.Writer
	// Dir is the processes' working directory; default the current one.
	Dir string

	mu      sync.Mutex
	out     io.Writer
	started map[types.UID]context.CancelFunc // pods taken, with what stops their process
	kwok    map[string]bool                  // node name → it is a kwok node
	procs   map[string]*os.Process           // "namespace/name" → its running process
	wg      sync.WaitGroup
}

// Run runs pods until ctx is done, then stops the processes still running
// (their pods are left as they are) and returns.
func (r *PodRunner) Run(ctx context.Context) error {
	if r.Client == nil {
		return errors.New("PodRunner.Client is nil")
	}
	out := r.Log
	if out == nil {
		out = io.Discard
	}
	r.mu.Lock()
	r.out = &lockedWriter{w: out}
	r.started = map[types.UID]context.CancelFunc{}
	r.kwok = map[string]bool{}
	r.mu.Unlock()

	opts := []informers.SharedInformerOption{}
	if r.Selector != nil && !r.Selector.Empty() {
		sel := r.Selector.String()
		opts = append(opts, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	}
	factory := informers.NewSharedInformerFactoryWithOptions(r.Client, 30*time.Second, opts...)
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.consider(ctx, obj) },
		UpdateFunc: func(_, obj any) { r.consider(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				r.cancel(pod.UID)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	r.wg.Wait()
	return nil
}

func (r *PodRunner) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "podrunner: "+format+"\n", args...)
}

func (r *PodRunner) cancel(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stop := r.started[uid]; stop != nil {
		stop()
	}
}

func (r *PodRunner) consider(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		r.cancel(pod.UID)
		return
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName == "" || ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	if _, ok := r.started[pod.UID]; ok {
		r.mu.Unlock()
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	r.started[pod.UID] = cancel
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer cancel()
		r.runPod(ctx, pctx, pod.DeepCopy())
	}()
}

func (r *PodRunner) isKwokNode(ctx context.Context, name string) (bool, error) {
	r.mu.Lock()
	known, ok := r.kwok[name]
	r.mu.Unlock()
	if ok {
		return known, nil
	}
	n, err := r.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	is := n.Labels[NodeLabelKey] == NodeLabelValue || n.Annotations[NodeAnnotationKey] == "fake"
	r.mu.Lock()
	r.kwok[name] = is
	r.mu.Unlock()
	return is, nil
}

// runPod runs pod's first container; ctx is the runner's, pctx is cancelled
// too when the pod is deleted.
func (r *PodRunner) runPod(ctx, pctx context.Context, pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	if ok, err := r.isKwokNode(ctx, pod.Spec.NodeName); err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			r.logf("%s: not run: node %s: %v", key, pod.Spec.NodeName, err)
		}
		return
	}
	if len(pod.Spec.Containers) == 0 {
		return
	}
	c := pod.Spec.Containers[0]
	started := metav1.Now()
	finish := func(code int32, reason, msg string) {
		if ctx.Err() != nil {
			return // the runner stopped: the pods stay as they are
		}
		// A deleted pod still gets its terminal phase, as a kubelet writes
		// it (KEP-3329): the Job controller's finalizer keeps the pod until
		// then, and a pod failure policy waits for it. Like a kubelet, keep
		// trying while the API server is unreachable (restarted): a lost
		// write would leave the pod Running for ever.
		for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
			err := r.finish(ctx, pod, code, reason, msg, started)
			if err == nil || ctx.Err() != nil {
				return
			}
			if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) {
				r.logf("%s: writing its status: %v", key, err)
				return
			}
			r.logf("%s: writing its status: %v (retrying in %s)", key, err, wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
	if len(c.Command) == 0 {
		finish(ExitCodeNotMapped, "Error", fmt.Sprintf("localcluster PodRunner: container %q has no command (image entrypoints cannot be run locally)", c.Name))
		return
	}
	local, ok := r.Commands[c.Command[0]]
	if !ok {
		msg := fmt.Sprintf("localcluster PodRunner: no local executable for the container command %q (add it to PodRunner.Commands)", c.Command[0])
		r.logf("%s: %s", key, msg)
		finish(ExitCodeNotMapped, "Error", msg)
		return
	}
	env, err := r.environment(ctx, pod, &c)
	if err != nil {
		msg := fmt.Sprintf("localcluster PodRunner: %v", err)
		r.logf("%s: %s", key, msg)
		finish(ExitCodeConfigError, "CreateContainerConfigError", msg)
		return
	}
	lookup := envLookup(env)
	var args []string
	for _, a := range append(append([]string(nil), c.Command[1:]...), c.Args...) {
		args = append(args, expand(a, lookup))
	}

	cmd := exec.Command(local, args...)
	cmd.Env = env
	cmd.Dir = r.Dir
	pw := &prefixWriter{prefix: key + ": ", w: r.out}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = sysProcAttr()
	r.logf("%s: running %s %q", key, local, args)
	if err := r.startProcess(key, cmd); err != nil {
		code := int32(ExitCodeNotMapped)
		if errors.Is(err, os.ErrPermission) {
			code = 126
		}
		r.logf("%s: %v", key, err)
		finish(code, "Error", fmt.Sprintf("localcluster PodRunner: starting %s: %v", local, err))
		return
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-pctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case werr = <-waited:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			werr = <-waited
		}
	}
	r.forgetProcess(key) // no longer running, even while its status is being written
	pw.flush()
	code := int32(0)
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		code = int32(ee.ExitCode())
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int32(ws.Signal())
		}
	default:
		code = 1
	}
	r.logf("%s: exited with code %d", key, code)
	if code == 0 {
		finish(0, "Completed", "")
	} else {
		finish(code, "Error", "")
	}
}

// startProcess starts cmd and records it as pod key's process, for Signal.
func (r *PodRunner) startProcess(key string, cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	if r.procs == nil {
		r.procs = map[string]*os.Process{}
	}
	r.procs[key] = cmd.Process
	return nil
}

func (r *PodRunner) forgetProcess(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.procs, key)
}

// Running lists the pods ("namespace/name") whose processes are running.
func (r *PodRunner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.procs))
	for k := range r.procs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Signal sends sig to the process group of pod key ("namespace/name"), as
// a crash or the OOM killer would (SIGKILL): the pod then fails with exit
// code 128+sig. It reports whether the pod's process was running.
func (r *PodRunner) Signal(key string, sig syscall.Signal) bool {
	r.mu.Lock()
	p := r.procs[key]
	r.mu.Unlock()
	return p != nil && syscall.Kill(-p.Pid, sig) == nil
}

// finish writes the pod's terminal status, as a kubelet would.
func (r *PodRunner) finish(ctx context.Context, pod *corev1.Pod, code int32, reason, msg string, started metav1.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := r.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID || cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed {
			return nil
		}
		now := metav1.Now()
		cur.Status.Phase = corev1.PodSucceeded
		if code != 0 {
			cur.Status.Phase = corev1.PodFailed
		}
		var statuses []corev1.ContainerStatus
		for i, c := range cur.Spec.Containers {
			t := &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: now}
			if i == 0 {
				t.ExitCode, t.Reason, t.Message = code, reason, msg
			}
			started := false
			statuses = append(statuses, corev1.ContainerStatus{
				Name:        c.Name,
				Image:       c.Image,
				ImageID:     c.Image,
				ContainerID: "localcluster://" + string(cur.UID) + "/" + c.Name,
				Ready:       false,
				Started:     &started,
				State:       corev1.ContainerState{Terminated: t},
			})
		}
		cur.Status.ContainerStatuses = statuses
		for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
			setCondition(&cur.Status, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: now})
		}
		_, err = r.Client.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

func setCondition(s *corev1.PodStatus, c corev1.PodCondition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == c.Type {
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

// environment is the container's environment: PATH, HOME and TMPDIR from
// this process, HOSTNAME, JOB_COMPLETION_INDEX, then envFrom and env as the
// kubelet resolves them.
func (r *PodRunner) environment(ctx context.Context, pod *corev1.Pod, c *corev1.Container) ([]string, error) {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			set(k, v)
		}
	}
	set("HOSTNAME", pod.Name)
	if idx, ok := pod.Annotations[JobCompletionIndexAnnotation]; ok {
		set("JOB_COMPLETION_INDEX", idx)
	}
	secrets := map[string]*corev1.Secret{}
	secret := func(name string) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := r.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		secrets[name] = s
		return s, nil
	}
	configMaps := map[string]*corev1.ConfigMap{}
	configMap := func(name string) (*corev1.ConfigMap, error) {
		if cm, ok := configMaps[name]; ok {
			return cm, nil
		}
		cm, err := r.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		configMaps[name] = cm
		return cm, nil
	}
	optional := func(p *bool) bool { return p != nil && *p }

	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := secret(from.SecretRef.Name)
			if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
			}
			for k, v := range s.Data {
				set(from.Prefix+k, string(v))
			}
			for k, v := range s.StringData {
				set(from.Prefix+k, v)
			}
		case from.ConfigMapRef != nil:
			cm, err := configMap(from.ConfigMapRef.Name)
			if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("envFrom configMap %q: %w", from.ConfigMapRef.Name, err)
			}
			for k, v := range cm.Data {
				set(from.Prefix+k, v)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, func(k string) (string, bool) { v, ok := vals[k]; return v, ok }))
			continue
		}
		switch vf := e.ValueFrom; {
		case vf.SecretKeyRef != nil:
			s, err := secret(vf.SecretKeyRef.Name)
			if apierrors.IsNotFound(err) && optional(vf.SecretKeyRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: secret %q: %w", e.Name, vf.SecretKeyRef.Name, err)
			}
			v, ok := s.Data[vf.SecretKeyRef.Key]
			if !ok {
				if optional(vf.SecretKeyRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %q has no key %q", e.Name, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
			}
			set(e.Name, string(v))
		case vf.ConfigMapKeyRef != nil:
			cm, err := configMap(vf.ConfigMapKeyRef.Name)
			if apierrors.IsNotFound(err) && optional(vf.ConfigMapKeyRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: configMap %q: %w", e.Name, vf.ConfigMapKeyRef.Name, err)
			}
			v, ok := cm.Data[vf.ConfigMapKeyRef.Key]
			if !ok {
				if optional(vf.ConfigMapKeyRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: configMap %q has no key %q", e.Name, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			}
			set(e.Name, v)
		case vf.FieldRef != nil:
			v, err := podField(pod, vf.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			set(e.Name, v)
		default:
			return nil, fmt.Errorf("env %s: only value, secretKeyRef, configMapKeyRef and fieldRef are supported", e.Name)
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

func podField(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func envLookup(env []string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// expand replaces $(VAR) with VAR's value where it is defined and $$ with $,
// as the kubelet does in command, args and env values.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// lockedWriter serialises writes from several processes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
