package controllers

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Labels of the objects a run makes in the jobs namespace: the run lives
// in another namespace, so they point back to it by name.
const (
	labelRunNamespace = "retention.dev/run-namespace"
	labelRunName      = "retention.dev/run-name"
	labelRunUID       = "retention.dev/run-uid"
	labelManagedBy    = "app.kubernetes.io/managed-by"
	managedBy         = "retention-operator"
)

// RunnerCommand is the outreach runner's binary in the operator's image:
// it links nothing of Kubernetes, so a pod starts in ~10 MiB, not ~45.
const RunnerCommand = "/retention-outreach"

// Exit codes of the outreach runner that its Job's podFailurePolicy reads.
const (
	// ExitConfig: the run can never work as configured (bad settings, a
	// store schema mismatch); the index fails at once, without retries.
	ExitConfig = 2
)

// RunnerConfig says how outreach Jobs are made.
type RunnerConfig struct {
	// Image is the operator's own image; the Job runs its `outreach` command.
	Image string
	// JobsNamespace is where Jobs and their Secrets are created: the
	// operator's own namespace, never a marketer's, because the pods get
	// the store URL, which reaches every tenant's customers.
	JobsNamespace string
	// StoreSecretName and StoreSecretKey select the Secret key in the
	// jobs namespace that holds the store URL (the operator's own).
	StoreSecretName, StoreSecretKey string
	// LocalProcesses says the Job's pods are run as processes on the
	// operator's machine (the local harness and demo): they get the
	// operator's store URL as a literal and may share its SQLite file.
	LocalProcesses bool
	// Resources of each runner container. If empty, 50m CPU / 64Mi
	// requested, 1 CPU / 256Mi limits.
	Resources corev1.ResourceRequirements
	// ActiveDeadline bounds a Job's run time. If zero, 6h.
	ActiveDeadline time.Duration
	// UnsubscribeBaseURL is the operator's public https base for one-click
	// unsubscribe links (RFC 8058), "" to put none in messages; the
	// links' tokens are signed with UnsubscribeKey, which reaches the
	// runners through the per-run Secret.
	UnsubscribeBaseURL string
	UnsubscribeKey     []byte
}

// jobName is the deterministic name of a run's Job: the first is
// "outreach-<run uid>", follow-ups add "-<n>". A restarted operator
// finds the Job it made instead of making a second.
func jobName(run *retentionv1.CampaignRun, followUp int32) string {
	name := "outreach-" + string(run.UID)
	if followUp > 0 {
		name += "-" + strconv.Itoa(int(followUp))
	}
	return name
}

// secretName is the per-run credentials Secret, shared by the run's Jobs.
func secretName(run *retentionv1.CampaignRun) string { return "outreach-" + string(run.UID) }

// currentJob returns the run's latest Job, or nil when it does not exist.
func (r *CampaignRunReconciler) currentJob(ctx context.Context, run *retentionv1.CampaignRun) (*batchv1.Job, error) {
	var job batchv1.Job
	key := types.NamespacedName{Namespace: r.Runner.JobsNamespace, Name: jobName(run, run.Status.FollowUpJobs)}
	if err := r.Get(ctx, key, &job); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Job %s: %w", key, err)
	}
	return &job, nil
}

// jobFinished reports whether a Job has ended, and whether it failed.
func jobFinished(job *batchv1.Job) (finished, failed bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, false
		case batchv1.JobFailed:
			return true, true
		}
	}
	return false, false
}

// launch creates the run's current Job and, beside it, the Secret with the
// channel's credentials, owned by the Job. Both are idempotent.
func (r *CampaignRunReconciler) launch(ctx context.Context, st store.Store, run *retentionv1.CampaignRun) error {
	stored, err := st.RunGet(ctx, string(run.UID))
	if err != nil {
		return fmt.Errorf("reading the run: %w", err)
	}
	creds, err := r.credentials(ctx, run)
	if err != nil {
		return err
	}
	job := r.jobFor(run, stored.Shards, run.Status.FollowUpJobs, len(creds) > 0)
	created := true
	if err := r.Create(ctx, job); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
		}
		created = false
		if err := r.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return fmt.Errorf("reading Job %s/%s: %w", job.Namespace, job.Name, err)
		}
	}
	if len(creds) > 0 {
		if err := r.ensureSecret(ctx, run, job, creds); err != nil {
			return err
		}
	}
	run.Status.JobRef = &retentionv1.NamespacedReference{Namespace: job.Namespace, Name: job.Name}
	if created && r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Normal", retentionv1.EventJobCreated, "Launch",
			"created Job %s/%s: %d shards", job.Namespace, job.Name, stored.Shards)
	}
	return nil
}

// ensureSecret writes the per-run credentials Secret, owned by the Job
// that first needs it (owner references work within a namespace).
func (r *CampaignRunReconciler) ensureSecret(ctx context.Context, run *retentionv1.CampaignRun, owner *batchv1.Job, data map[string][]byte) error {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: secretName(run), Namespace: r.Runner.JobsNamespace, Labels: runLabels(run),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: owner.Name, UID: owner.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if err := r.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the run's credentials Secret: %w", err)
	}
	return nil
}

// credentials reads the channel's Secrets into the per-run Secret's data,
// keyed by the runner's environment variable names. Credentials never go
// into the store.
func (r *CampaignRunReconciler) credentials(ctx context.Context, run *retentionv1.CampaignRun) (map[string][]byte, error) {
	var c retentionv1.Campaign
	if err := r.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: run.Spec.CampaignRef.Name}, &c); err != nil {
		return nil, fmt.Errorf("reading the campaign: %w", err)
	}
	var ch retentionv1.Channel
	if err := r.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: c.Spec.ChannelRef.Name}, &ch); err != nil {
		return nil, fmt.Errorf("reading the channel: %w", err)
	}
	data := map[string][]byte{}
	read := func(name, key, env string) error {
		v, err := r.secretValue(ctx, run.Namespace, name, key)
		if err != nil {
			return err
		}
		data[env] = v
		return nil
	}
	if r.Runner.UnsubscribeBaseURL != "" && ch.Spec.Slack == nil {
		// Base64: the key is random bytes, and an environment variable
		// cannot carry a NUL.
		data[campaign.EnvUnsubscribeKey] = []byte(base64.StdEncoding.EncodeToString(r.Runner.UnsubscribeKey))
	}
	switch {
	case ch.Spec.Webhook != nil && ch.Spec.Webhook.SigningSecretRef != nil:
		ref := ch.Spec.Webhook.SigningSecretRef
		return data, read(ref.Name, ref.Key, campaign.EnvSigningKey)
	case ch.Spec.SMTP != nil:
		m := ch.Spec.SMTP
		if m.CredentialsSecretRef != nil {
			name := m.CredentialsSecretRef.Name
			if err := read(name, "username", campaign.EnvSMTPUsername); err != nil {
				return data, err
			}
			if err := read(name, "password", campaign.EnvSMTPPassword); err != nil {
				return data, err
			}
		}
		if m.DKIM != nil {
			return data, read(m.DKIM.PrivateKeySecretRef.Name, m.DKIM.PrivateKeySecretRef.Key, campaign.EnvDKIMKey)
		}
	case ch.Spec.Slack != nil:
		ref := ch.Spec.Slack.WebhookURLSecretRef
		return data, read(ref.Name, ref.Key, campaign.EnvSlackURL)
	}
	return data, nil
}

// secretValue reads one key of a Secret, uncached (Secrets are watched
// as metadata only).
func (r *CampaignRunReconciler) secretValue(ctx context.Context, ns, name, key string) ([]byte, error) {
	var sec corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, waiting(retentionv1.ReasonSecretNotFound, "secret %s/%s not found", ns, name)
		}
		return nil, fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
	}
	v, ok := sec.Data[key]
	if !ok {
		return nil, waiting(retentionv1.ReasonSecretKeyNotFound, "secret %s/%s has no key %q", ns, name, key)
	}
	return v, nil
}

func runLabels(run *retentionv1.CampaignRun) map[string]string {
	return map[string]string{
		labelRunNamespace: run.Namespace,
		labelRunName:      run.Name,
		labelRunUID:       string(run.UID),
		labelManagedBy:    managedBy,
	}
}

// jobFor is the outreach Job of a run: one Indexed Job, one index per
// shard, each pod running `/retention-outreach --run <uid>` (the image's
// lean runner binary, see cmd/retention-outreach) with
// its shard from JOB_COMPLETION_INDEX. Pods meet the restricted Pod
// Security Standard and get no service account token; a failing shard
// retries on its own (backoffLimitPerIndex) without failing the others,
// and an exit for a bad configuration fails its index at once.
func (r *CampaignRunReconciler) jobFor(run *retentionv1.CampaignRun, shards, followUp int32, withSecret bool) *batchv1.Job {
	labels := runLabels(run)
	deadline := r.Runner.ActiveDeadline
	if deadline <= 0 {
		deadline = 6 * time.Hour
	}
	container := corev1.Container{
		Name:            "outreach",
		Image:           r.Runner.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{RunnerCommand},
		Args:            []string{"--run", string(run.UID)},
		Env:             []corev1.EnvVar{r.storeEnv()},
		Resources:       r.resources(),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if withSecret {
		container.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: secretName(run)},
		}}}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(run, followUp), Namespace: r.Runner.JobsNamespace, Labels: labels},
		Spec: batchv1.JobSpec{
			CompletionMode:        ptr.To(batchv1.IndexedCompletion),
			Completions:           ptr.To(shards),
			Parallelism:           ptr.To(shards),
			BackoffLimitPerIndex:  ptr.To(int32(3)),
			ActiveDeadlineSeconds: ptr.To(int64(deadline.Seconds())),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailIndex,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: ptr.To("outreach"),
					Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
					Values:        []int32{ExitConfig},
				},
			}}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(65532)),
						RunAsGroup:     ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{container},
				},
			},
		},
	}
}

// storeEnv gives the pods the store URL: from the operator's store Secret
// in a cluster; as a literal for the local harness's processes.
func (r *CampaignRunReconciler) storeEnv() corev1.EnvVar {
	if r.Runner.LocalProcesses {
		return corev1.EnvVar{Name: campaign.EnvStore, Value: r.Stores.URL}
	}
	return corev1.EnvVar{Name: campaign.EnvStore, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: r.Runner.StoreSecretName},
		Key:                  r.Runner.StoreSecretKey,
	}}}
}

func (r *CampaignRunReconciler) resources() corev1.ResourceRequirements {
	if len(r.Runner.Resources.Requests) > 0 || len(r.Runner.Resources.Limits) > 0 {
		return r.Runner.Resources
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// deleteJobs removes every Job and Secret the run made in the jobs
// namespace (a finalizer's work: owner references cannot cross namespaces).
func (r *CampaignRunReconciler) deleteJobs(ctx context.Context, run *retentionv1.CampaignRun) error {
	sel := client.MatchingLabels{labelRunUID: string(run.UID)}
	ns := client.InNamespace(r.Runner.JobsNamespace)
	bg := client.PropagationPolicy(metav1.DeletePropagationBackground)
	if err := r.DeleteAllOf(ctx, &batchv1.Job{}, ns, sel, bg); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the run's Jobs: %w", err)
	}
	if err := r.DeleteAllOf(ctx, &corev1.Secret{}, ns, sel); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the run's Secret: %w", err)
	}
	return nil
}
