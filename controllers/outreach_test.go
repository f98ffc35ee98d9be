package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/outreach/unsubscribe"
)

// hookSink is a webhook receiver that verifies each signature with the
// Standard Webhooks library and keeps the payloads by idempotency key.
type hookSink struct {
	verifier *standardwebhooks.Webhook
	mu       sync.Mutex
	bodies   map[string][]byte
	bad      int
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verifier != nil && s.verifier.Verify(body, r.Header) != nil {
		s.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	key := r.Header.Get("webhook-id")
	if key == "" {
		key = r.Header.Get("X-Retention-Idempotency-Key")
	}
	s.bodies[key] = body
	w.WriteHeader(http.StatusOK)
}

func (s *hookSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

// mailSink is a real SMTP server (go-smtp) that keeps every message.
type mailSink struct {
	mu   sync.Mutex
	msgs map[string][]byte // by recipient
}

func (b *mailSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{b: b}, nil }

type mailSession struct {
	b  *mailSink
	to []string
}

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for _, to := range s.to {
		s.b.msgs[to] = msg
	}
	return nil
}
func (s *mailSession) Reset()        { s.to = nil }
func (s *mailSession) Logout() error { return nil }

func startMailSink(t *testing.T) (*mailSink, int) {
	t.Helper()
	b := &mailSink{msgs: map[string][]byte{}}
	srv := smtp.NewServer(b)
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b, ln.Addr().(*net.TCPAddr).Port
}

// outreachWorld is a source whose customers have email addresses, one
// segment of everyone, and a channel of each kind pointing at real local
// receivers.
type outreachWorld struct {
	ns    string
	hooks *hookSink
	slack *hookSink
	mail  *mailSink
}

func newOutreachWorld(t *testing.T) *outreachWorld {
	t.Helper()
	ctx := context.Background()
	const key = "whsec_b3V0cmVhY2gtdGVzdC1zaWduaW5nLWtleQ=="
	verifier, err := standardwebhooks.NewWebhook(key)
	if err != nil {
		t.Fatal(err)
	}
	w := &outreachWorld{ns: newNamespace(t), hooks: &hookSink{verifier: verifier, bodies: map[string][]byte{}},
		slack: &hookSink{bodies: map[string][]byte{}}}
	hookSrv, slackSrv := httptest.NewServer(w.hooks), httptest.NewServer(w.slack)
	t.Cleanup(hookSrv.Close)
	t.Cleanup(slackSrv.Close)
	var mailPort int
	w.mail, mailPort = startMailSink(t)

	var customers strings.Builder
	customers.WriteString("customer_id,email\n")
	for i := range 120 {
		fmt.Fprintf(&customers, "c%05d,c%05d@shop.test\n", i, i)
	}
	src := newCSVSource(w.ns, "shop", "data", nil)
	src.Spec.CSV.Customers = &retentionv1.CSVLocation{ConfigMapKeyRef: &retentionv1.KeySelector{Name: "data", Key: "customers.csv"}}
	src.Spec.Mapping.Contact = &retentionv1.ContactMapping{Email: "email"}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "data"},
			Data: map[string]string{"transactions.csv": string(transactionsCSV(120, 5)), "customers.csv": customers.String()}},
		src,
		&retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "everyone"},
			Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 0"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "creds"},
			Data: map[string][]byte{"hook": []byte(key), "slack": []byte(slackSrv.URL + "/services/T0/B0/x")}},
		&retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "hook"},
			Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{URL: hookSrv.URL + "/hook",
				SigningSecretRef: &retentionv1.KeySelector{Name: "creds", Key: "hook"}}}},
		&retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "mail"},
			Spec: retentionv1.ChannelSpec{SMTP: &retentionv1.SMTPChannel{Host: "127.0.0.1", Port: int32(mailPort), TLSMode: retentionv1.TLSModeNone,
				From: "Shop <hello@shop.test>", RelaySigns: true, UnsubscribeMailto: "unsubscribe@shop.test"}}},
		&retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "team-slack"},
			Spec: retentionv1.ChannelSpec{Slack: &retentionv1.SlackChannel{WebhookURLSecretRef: retentionv1.KeySelector{Name: "creds", Key: "slack"}}}},
	}
	for _, o := range objs {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "everyone"}}
	eventually(t, waitFor, readyIs(seg, func() []metav1.Condition { return seg.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "members"))
	for _, name := range []string{"hook", "mail", "team-slack"} {
		ch := &retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name}}
		eventually(t, waitFor, readyIs(ch, func() []metav1.Condition { return ch.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, ""))
	}
	return w
}

func (w *outreachWorld) campaign(t *testing.T, name, channel string) {
	t.Helper()
	c := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: retentionv1.CampaignSpec{
			SegmentRef: retentionv1.LocalObjectReference{Name: "everyone"},
			ChannelRef: retentionv1.LocalObjectReference{Name: channel},
			Message: retentionv1.Message{Subject: "We miss you", Body: "Hello {{.ID}}",
				HTML:     `<p>Hello <b>{{.ID}}</b></p>`,
				Variants: []retentionv1.MessageVariant{{Name: "a"}, {Name: "b", Body: "Hi {{.ID}}, 10% off"}}},
			Schedule:         "@yearly",
			Suspend:          true, // ad-hoc runs only (see campaignWorld.campaign)
			HoldoutPercent:   ptr.To(int32(20)),
			Parallelism:      ptr.To(int32(2)),
			ConversionWindow: &metav1.Duration{Duration: time.Hour},
		}}
	if err := k8sClient.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(c, func() []metav1.Condition { return c.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, ""))
}

// deliver runs an ad-hoc run of a campaign to the end of sending: the run
// launches its Job, the local Job runner runs the real runner binary for
// every shard (as pods would), and the run tallies the delivery.
func (w *outreachWorld) deliver(t *testing.T, campaignName, runName string) *retentionv1.CampaignRun {
	t.Helper()
	ctx := context.Background()
	run := adHocRun(t, w.ns, campaignName, runName)
	waitPhase(t, run, retentionv1.RunSending)
	waitJobRef(t, run)
	var job batchv1.Job
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: run.Status.JobRef.Namespace, Name: run.Status.JobRef.Name}, &job); err != nil {
		t.Fatal(err)
	}
	local := &LocalJobsReconciler{Client: k8sClient, APIReader: k8sClient, Namespace: suiteJobsNamespace, Binary: suiteRunnerBinary}
	if err := local.RunJob(ctx, &job); err != nil {
		t.Fatal(err)
	}
	if job.Status.Succeeded != *job.Spec.Completions {
		t.Fatalf("local Job: %d of %d indexes succeeded", job.Status.Succeeded, *job.Spec.Completions)
	}
	waitPhase(t, run, retentionv1.RunMeasuring)
	return run
}

// TestOutreachEndToEnd: campaigns on a webhook, an SMTP and a Slack
// channel each deliver their treatment group through the real runner to a
// real receiver, once per customer; the holdout gets nothing; the status
// counts per variant add up; and a one-click unsubscribe from a delivered
// message removes the customer from the next run.
func TestOutreachEndToEnd(t *testing.T) {
	w := newOutreachWorld(t)
	for _, tc := range []struct {
		campaign, channel string
		received          func() int
	}{
		{"by-hook", "hook", w.hooks.count},
		{"by-mail", "mail", func() int { w.mail.mu.Lock(); defer w.mail.mu.Unlock(); return len(w.mail.msgs) }},
		{"by-slack", "team-slack", w.slack.count},
	} {
		t.Run(tc.channel, func(t *testing.T) {
			w.campaign(t, tc.campaign, tc.channel)
			run := w.deliver(t, tc.campaign, tc.campaign+"-1")
			a, d := run.Status.Audience, run.Status.Delivery
			if a.Treatment == 0 || a.Holdout == 0 || a.Treatment+a.Holdout != a.Members {
				t.Fatalf("audience %+v", a)
			}
			if d.Sent != a.Treatment || d.Failed != 0 || d.Pending != 0 || d.InFlight != 0 {
				t.Errorf("delivery %+v, want all %d treatment targets sent", d, a.Treatment)
			}
			if got := tc.received(); int64(got) != a.Treatment {
				t.Errorf("the receiver got %d messages, want %d (one per treatment customer)", got, a.Treatment)
			}
			var vt, vh, vs int64
			for _, v := range run.Status.Variants {
				vt, vh, vs = vt+v.Treatment, vh+v.Holdout, vs+v.Sent
			}
			if len(run.Status.Variants) != 2 || vt != a.Treatment || vh != a.Holdout || vs != d.Sent {
				t.Errorf("variants %+v do not add up to the audience %+v", run.Status.Variants, a)
			}
		})
	}
	if w.hooks.bad != 0 {
		t.Errorf("%d webhook requests failed signature verification", w.hooks.bad)
	}

	// An email carries both List-Unsubscribe headers (RFC 8058) and both parts.
	w.mail.mu.Lock()
	for to, raw := range w.mail.msgs {
		m, err := mail.ReadMessage(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatalf("message to %s: %v", to, err)
		}
		lu := m.Header.Get("List-Unsubscribe")
		if !strings.Contains(lu, "<https://retention.test/unsubscribe/") || !strings.Contains(lu, "<mailto:unsubscribe@shop.test>") ||
			m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" ||
			!strings.HasPrefix(m.Header.Get("Content-Type"), "multipart/alternative") {
			t.Errorf("message to %s: headers %v", to, m.Header)
		}
		break
	}
	w.mail.mu.Unlock()

	// One-click unsubscribe from a delivered webhook message: the next run
	// of the campaign excludes the customer.
	var payload struct {
		Data struct {
			Customer struct {
				ID string `json:"id"`
			} `json:"customer"`
			UnsubscribeURL string `json:"unsubscribeUrl"`
		} `json:"data"`
	}
	w.hooks.mu.Lock()
	for _, body := range w.hooks.bodies {
		if err := json.Unmarshal(body, &payload); err != nil {
			t.Fatal(err)
		}
		break
	}
	w.hooks.mu.Unlock()
	path, ok := strings.CutPrefix(payload.Data.UnsubscribeURL, suiteRunner.UnsubscribeBaseURL)
	if !ok || payload.Data.Customer.ID == "" {
		t.Fatalf("payload has no unsubscribe URL under %s: %+v", suiteRunner.UnsubscribeBaseURL, payload.Data)
	}
	st, err := suiteStores.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	endpoint := httptest.NewServer(unsubscribe.Handler(unsubscribe.HandlerConfig{Key: suiteRunner.UnsubscribeKey, OptOuts: st}))
	defer endpoint.Close()
	resp, err := http.Post(endpoint.URL+path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %s", resp.Status)
	}
	before := w.hooks.count()
	run := w.deliver(t, "by-hook", "by-hook-2")
	if run.Status.Audience.OptedOut != 1 {
		t.Errorf("the next run's audience %+v, want the unsubscribed customer excluded (optedOut 1)", run.Status.Audience)
	}
	w.hooks.mu.Lock()
	for key := range w.hooks.bodies {
		if strings.HasPrefix(key, string(run.UID)+"/") && strings.HasSuffix(key, "/"+payload.Data.Customer.ID) {
			t.Errorf("the unsubscribed customer was sent the next run's message")
		}
	}
	w.hooks.mu.Unlock()
	if int64(w.hooks.count()-before) != run.Status.Delivery.Sent {
		t.Errorf("second run: the receiver got %d, status says %d sent", w.hooks.count()-before, run.Status.Delivery.Sent)
	}
}
