package controllers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// decodeObjects reads every object of a multi-document YAML file.
func decodeObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}

// TestSamplesApply creates every object of every file in config/samples.
func TestSamplesApply(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	segments, err := filepath.Glob(filepath.Join("..", "config", "samples", "segments", "*.yaml"))
	if err != nil || len(segments) < 9 {
		t.Fatalf("want the nine sample segments, found %d: %v", len(segments), err)
	}
	files = append(files, segments...)
	ns := newNamespace(t)
	applied := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range decodeObjects(t, data) {
			obj.SetNamespace(ns)
			if err := k8sClient.Create(context.Background(), obj); err != nil {
				t.Errorf("%s: creating %s %s: %v", filepath.Base(f), obj.GetKind(), obj.GetName(), err)
				continue
			}
			applied++
		}
	}
	if applied < 14 {
		t.Fatalf("applied %d sample objects, want at least one per kind", applied)
	}
}

// TestInvalidManifestsRejected checks that the API server rejects bad
// manifests with a message that names the field at fault.
func TestInvalidManifestsRejected(t *testing.T) {
	ns := newNamespace(t)
	const source = `apiVersion: retention.dev/v1alpha1
kind: CustomerSource
metadata: {name: bad}
spec:
`
	const channel = `apiVersion: retention.dev/v1alpha1
kind: Channel
metadata: {name: bad}
spec:
`
	const segment = `apiVersion: retention.dev/v1alpha1
kind: Segment
metadata: {name: bad}
spec:
`
	const campaign = `apiVersion: retention.dev/v1alpha1
kind: Campaign
metadata: {name: bad}
spec:
  segmentRef: {name: s}
  channelRef: {name: c}
  message: {body: hi}
`
	cases := []struct {
		name, manifest string
		// wantAll are substrings that must all appear in the error: the field path and what is wrong.
		wantAll []string
	}{
		{"source without csv/postgres/http", source + "  mapping: {customerID: id}\n",
			[]string{"spec", "exactly one of csv, postgres or http"}},
		{"source with csv and http", source + "  csv: {transactions: {path: /tmp/x.csv}}\n  http: {url: http://x}\n",
			[]string{"spec", "exactly one of csv, postgres or http"}},
		{"csv location with two origins", source + "  csv: {transactions: {path: /tmp/x.csv, url: http://x}}\n",
			[]string{"spec.csv.transactions", "exactly one of path, configMapKeyRef, secretKeyRef or url"}},
		{"csv auth without url", source + "  csv: {transactions: {path: /x, auth: {bearerTokenSecretRef: {name: a, key: b}}}}\n",
			[]string{"spec.csv.transactions", "auth can only be set with url"}},
		{"csv delimiter too long", source + "  csv: {transactions: {path: /x}, delimiter: ';;'}\n",
			[]string{"spec.csv.delimiter"}},
		{"postgres with both queries", source + "  postgres: {dsnSecretRef: {name: a, key: b}, transactionsQuery: q, summaryQuery: q}\n",
			[]string{"spec.postgres", "exactly one of transactionsQuery or summaryQuery"}},
		{"postgres without dsn", source + "  postgres: {transactionsQuery: q}\n",
			[]string{"spec.postgres.dsnSecretRef", "Required"}},
		{"http url not http", source + "  http: {url: ftp://x}\n",
			[]string{"spec.http.url"}},
		{"refresh interval too short", source + "  csv: {transactions: {path: /x}}\n  refreshInterval: 10s\n",
			[]string{"spec.refreshInterval", "at least 1m"}},
		{"unknown model", source + "  csv: {transactions: {path: /x}}\n  scoring: {model: Magic}\n",
			[]string{"spec.scoring.model", "Unsupported value"}},
		{"unknown time unit", source + "  csv: {transactions: {path: /x}}\n  scoring: {timeUnit: Fortnight}\n",
			[]string{"spec.scoring.timeUnit", "Unsupported value"}},
		{"max rejected over 100", source + "  csv: {transactions: {path: /x}}\n  maxRejectedPercent: 150\n",
			[]string{"spec.maxRejectedPercent"}},
		{"attribute type unknown", source + "  csv: {transactions: {path: /x}}\n  mapping: {attributes: [{name: a, type: Money}]}\n",
			[]string{"spec.mapping.attributes[0].type", "Unsupported value"}},
		{"attribute name not an identifier", source + "  csv: {transactions: {path: /x}}\n  mapping: {attributes: [{name: 'first name'}]}\n",
			[]string{"spec.mapping.attributes[0].name"}},
		{"custom score name not an identifier", source + "  csv: {transactions: {path: /x}}\n  scoring: {customScores: [{name: '1x', expression: '1.0'}]}\n",
			[]string{"spec.scoring.customScores[0].name"}},
		{"channel with two kinds", channel + "  webhook: {url: http://x}\n  slack: {webhookURLSecretRef: {name: a, key: b}}\n",
			[]string{"spec", "exactly one of webhook, smtp or slack"}},
		{"smtp port out of range", channel + "  smtp: {host: mail, port: 70000, from: a@b.c, relaySigns: true}\n",
			[]string{"spec.smtp.port"}},
		{"smtp tls mode unknown", channel + "  smtp: {host: mail, from: a@b.c, relaySigns: true, tlsMode: Maybe}\n",
			[]string{"spec.smtp.tlsMode", "Unsupported value"}},
		{"smtp unsigned", channel + "  smtp: {host: mail, from: a@b.c}\n",
			[]string{"spec.smtp", "set dkim, or relaySigns: true"}},
		{"smtp dkim and relay signs", channel + "  smtp: {host: mail, from: a@b.c, relaySigns: true, dkim: {domain: b.c, selector: s, privateKeySecretRef: {name: k, key: pem}}}\n",
			[]string{"spec.smtp", "dkim cannot be set when relaySigns is true"}},
		{"smtp bad unsubscribe mailto", channel + "  smtp: {host: mail, from: a@b.c, relaySigns: true, unsubscribeMailto: 'not an address'}\n",
			[]string{"spec.smtp.unsubscribeMailto"}},
		{"rate limit zero", channel + "  webhook: {url: http://x}\n  rateLimit: {perSecond: 0}\n",
			[]string{"spec.rateLimit.perSecond"}},
		{"segment without rule", segment + "  sourceRef: {name: s}\n",
			[]string{"spec.rule", "Required"}},
		{"segment without sourceRef", segment + "  rule: 'true'\n",
			[]string{"spec.sourceRef", "Required"}},
		{"campaign with schedule and trigger", campaign + "  schedule: '@daily'\n  trigger: OnEnter\n",
			[]string{"spec", "exactly one of schedule or trigger"}},
		{"campaign with neither schedule nor trigger", campaign,
			[]string{"spec", "exactly one of schedule or trigger"}},
		{"campaign holdout over 50", campaign + "  schedule: '@daily'\n  holdoutPercent: 60\n",
			[]string{"spec.holdoutPercent", "less than or equal to 50"}},
		{"campaign cron with four fields", campaign + "  schedule: '0 9 * *'\n",
			[]string{"spec.schedule", "five cron fields"}},
		{"campaign cron with bad characters", campaign + "  schedule: '0 9 * * $'\n",
			[]string{"spec.schedule", "may contain only"}},
		{"campaign timeZone with trigger", campaign + "  trigger: OnEnter\n  timeZone: UTC\n",
			[]string{"spec", "timeZone can only be set with schedule"}},
		{"campaign quiet hours malformed", campaign + "  schedule: '@daily'\n  quietHours: {start: '25:00', end: '08:00'}\n",
			[]string{"spec.quietHours.start"}},
		{"campaign concurrency policy unknown", campaign + "  schedule: '@daily'\n  concurrencyPolicy: Sometimes\n",
			[]string{"spec.concurrencyPolicy", "Unsupported value"}},
		{"campaign variant name invalid", campaign[:len(campaign)-len("  message: {body: hi}\n")] + "  message: {body: hi, variants: [{name: 'Big Sale'}]}\n  schedule: '@daily'\n",
			[]string{"spec.message.variants[0].name"}},
		{"campaign run without campaignRef", "apiVersion: retention.dev/v1alpha1\nkind: CampaignRun\nmetadata: {name: bad}\nspec: {scheduledTime: '2026-01-01T00:00:00Z'}\n",
			[]string{"spec.campaignRef", "Required"}},
	}
	if len(cases) < 15 {
		t.Fatalf("want at least 15 invalid manifests, have %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(tc.manifest), &u.Object); err != nil {
				t.Fatalf("test manifest does not parse: %v", err)
			}
			u.SetNamespace(ns)
			err := k8sClient.Create(context.Background(), &u, client.DryRunAll)
			if err == nil {
				t.Fatalf("API server accepted an invalid manifest:\n%s", tc.manifest)
			}
			for _, want := range tc.wantAll {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}
