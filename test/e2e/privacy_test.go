package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Canaries: personal data planted in the sources that must never leave the
// data plane — not in logs, Events, any object's status or spec, metrics
// or the Jobs. The shop's export gives every customer whose id ends in 7
// a Persian first name (which the win-back subject uses), the CRM gives its
// newcomers a phone number; every customer id and email address of both
// sources is a canary too.
const (
	canaryName  = "نیلوفر"
	canaryPhone = "+989125550147"
)

// personalData matches what the story's sources hold about a person:
// customer ids (c0000001, n0001) not inside a longer hex or UID-like token,
// the generated email addresses, and the canaries.
var personalData = regexp.MustCompile(`(^|[^0-9a-zA-Z_-])(c\d{7}|n\d{4})([^0-9a-zA-Z_-]|$)|[A-Za-z0-9._%+-]+@example\.(org|net)|` +
	regexp.QuoteMeta(canaryName) + `|` + regexp.QuoteMeta(strings.TrimPrefix(canaryPhone, "+")))

// plantNames rewrites a generated customers file (gzip CSV, first_name in
// the second column) with the canary name for ids ending in 7.
func plantNames(t *testing.T, path string) {
	t.Helper()
	var out bytes.Buffer
	lines := strings.Split(strings.TrimRight(string(gunzip(t, path)), "\n"), "\n")
	out.WriteString(lines[0] + "\n")
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if strings.HasSuffix(f[0], "7") {
			f[1] = canaryName
		}
		out.WriteString(strings.Join(f, ",") + "\n")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(out.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkNoPersonalData looks for personal data everywhere the operator
// writes outside its store: its log and its runners' output, every Event,
// every object of the retention category, every Job, pod and Secret in the
// jobs namespace, and the metrics it exports. The receivers did get it
// (the check fails if they did not: it would prove nothing).
func (w *world) checkNoPersonalData(t *testing.T) {
	t.Helper()
	if !w.receivedCanaries() {
		t.Fatal("no message carried a canary: the privacy check would prove nothing")
	}
	places := map[string]string{
		"operator log":        readFile(t, w.operatorLog),
		"runner pods' output": readFile(t, filepath.Join(w.dir, "pods.log")),
		"Events":              w.run(t, nil, "get", "events", "-A", "-o", "json"),
		"retention objects":   w.run(t, nil, "get", "retention", "-A", "-o", "json"),
		"jobs namespace":      w.run(t, nil, "get", "jobs,pods,secrets,configmaps", "-n", jobsNamespace, "-o", "json"),
		"metrics":             httpGet(t, "http://"+w.metricsAddr+"/metrics"),
	}
	for where, text := range places {
		if len(text) == 0 {
			t.Errorf("%s: nothing to look at", where)
			continue
		}
		if m := personalData.FindString(text); m != "" {
			i := strings.Index(text, m)
			t.Errorf("%s holds personal data (%q) in: …%s…", where, strings.TrimSpace(m), text[max(0, i-120):min(len(text), i+len(m)+40)])
		}
	}
}

// receivedCanaries reports whether the receivers got the planted name (in
// a win-back subject) and the customer ids and emails.
func (w *world) receivedCanaries() bool {
	name := false
	for _, m := range w.webhook.Messages() {
		if strings.Contains(m.Subject, canaryName) {
			name = true
			break
		}
	}
	return name && len(w.smtp.Messages()) > 0
}

// checkPodSecurity: the jobs namespace enforces the restricted Pod
// Security Standard (platform.yaml labels it), so every outreach pod the
// story ran passed it; a pod that does not is refused, which shows the
// admission is really on.
func (w *world) checkPodSecurity(t *testing.T) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged-probe", Namespace: jobsNamespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}},
	}
	err := w.k8s.Create(context.Background(), pod)
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("a privileged pod in %s: %v; want it refused by PodSecurity (restricted)", jobsNamespace, err)
	}
}

// writeRequests sums the operator's own API write requests (client-go's
// rest_client_requests_total for POST, PUT, PATCH and DELETE).
func (w *world) writeRequests(t *testing.T) float64 {
	t.Helper()
	var total float64
	for _, l := range strings.Split(httpGet(t, "http://"+w.metricsAddr+"/metrics"), "\n") {
		if !strings.HasPrefix(l, "rest_client_requests_total{") {
			continue
		}
		for _, verb := range []string{`method="POST"`, `method="PUT"`, `method="PATCH"`, `method="DELETE"`} {
			if strings.Contains(l, verb) {
				var v float64
				if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				total += v
			}
		}
	}
	return total
}

// checkQuiet: with nothing changing (campaigns suspended or waiting for
// entrants, runs measured, sources scored) the operator writes nothing to
// the API server for a minute: status is written only on change, and no
// reconcile loops.
// The story's last rescoring may still be settling (segments, campaigns,
// measurements written in turn): the minute starts once no write has come
// for 10 s, and a loop that never lets it start fails the check too.
func (w *world) checkQuiet(t *testing.T, d time.Duration) {
	t.Helper()
	before, since := w.writeRequests(t), time.Now()
	if before == 0 {
		t.Fatal("rest_client_requests_total shows no write at all: the metric is not what this check reads")
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Since(since) < 10*time.Second; {
		if time.Now().After(deadline) {
			t.Fatalf("the operator kept writing to the API server for 2 minutes after the story ended (%v writes)", before)
		}
		time.Sleep(time.Second)
		if n := w.writeRequests(t); n != before {
			before, since = n, time.Now()
		}
	}
	t.Logf("API writes settled at %v, %s before the quiet %s", before, time.Since(since).Round(time.Second), d)
	time.Sleep(d)
	if after := w.writeRequests(t); after != before {
		t.Errorf("the operator made %v API writes in %s of steady state, want 0", after-before, d)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
