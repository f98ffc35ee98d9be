# retention-operator — `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

TOOLS_DIR ?= $(shell hack/tools.sh dir)
TOOLS_BIN := $(TOOLS_DIR)/bin
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen
KUBECTL ?= $(TOOLS_BIN)/kubectl
PROMTOOL ?= promtool
HELM ?= $(TOOLS_BIN)/helm
CHART := charts/retention-operator
IMG ?= retention-operator:dev
GO_TEST_FLAGS ?= -count=1 -timeout=30m

export KUBEBUILDER_ASSETS := $(TOOLS_BIN)

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-14s %s\n", $$1, $$2}'

##@ Everyday

.PHONY: demo
demo: tools build ## Start a local control plane, run the operator, apply the samples and show them.
	hack/demo.sh

.PHONY: test
test: tools verify test-rules test-chart unit ## Lint-level checks, the Prometheus rules' tests, the Helm chart's checks, then unit and envtest tests against a real kube-apiserver and PostgreSQL.

.PHONY: unit
unit: ## Run the Go tests (envtest, PostgreSQL and SQLite included); the end-to-end tier runs in test-e2e, the chart's in test-chart.
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v -e /test/e2e -e /test/chart)

.PHONY: fuzz
# -fuzzminimizetime bounds the minimizing of each new interesting input
# (60 s by default): the fuzzer reports "context deadline exceeded" when
# FUZZTIME ends while it minimizes one, which a deeply nested JSON seed of
# FuzzHTTPJSONPage made happen in CI. Crashers are still reported whole.
fuzz: ## Run every Go fuzz target for FUZZTIME (default 10s) each, beyond its checked-in seeds (CI: 5s).
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' internal cmd 2>/dev/null | sort); do \
	  for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
	    echo "== ./$$(dirname $$file) $$fn"; go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $${FUZZTIME:-10s} -fuzzminimizetime 100x ./$$(dirname $$file); \
	  done; \
	done

.PHONY: test-e2e
test-e2e: tools ## The whole story on a local simulated cluster (kube-controller-manager, kube-scheduler, kwok), PostgreSQL, webhook and SMTP receivers and Prometheus; then the faults (~12 min).
	go test $(GO_TEST_FLAGS) -v ./test/e2e/

.PHONY: verify
verify: fmt-check vet verify-generated verify-monitoring ## gofmt, go vet, generated files up to date.

.PHONY: fmt-check
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet:
	go vet ./...

.PHONY: verify-generated
verify-generated: ## Fail when `make manifests generate` would change a checked-in file.
	hack/verify-generated.sh "$(CONTROLLER_GEN)"

.PHONY: verify-monitoring
verify-monitoring: ## Fail when `make monitoring` would change a checked-in file, or config/prometheus or config/grafana does not build.
	hack/verify-monitoring.sh "$(KUBECTL)"

.PHONY: test-rules
test-rules: ## promtool: check the Prometheus rules and run their unit tests (config/prometheus/tests).
	@command -v $(PROMTOOL) >/dev/null 2>&1 || { echo "$(PROMTOOL) not found: run 'make tools'" >&2; exit 1; }
	$(PROMTOOL) check rules --lint=all --lint-fatal config/prometheus/rules/retention-operator.rules.yaml
	$(PROMTOOL) test rules config/prometheus/tests/*.yaml

.PHONY: test-chart
test-chart: ## The Helm chart: helm lint --strict and helm template with the default values and each ci/*-values.yaml (every toggle on), then test/chart (rendered objects, toggles, schema, RBAC and CRDs equal config/, kubeconform -strict on the custom resources, server-side dry run on a real kube-apiserver).
	@test -x $(HELM) || { echo "$(HELM) not found: run 'make tools'" >&2; exit 1; }
	@set -e; for values in "" $(CHART)/ci/*-values.yaml; do \
	  echo "== helm lint --strict $(CHART) $${values:+-f $$values}"; \
	  $(HELM) lint --strict $(CHART) $${values:+-f $$values}; \
	  $(HELM) template retention-operator $(CHART) -n retention-system $${values:+-f $$values} >/dev/null; \
	done
	go test $(GO_TEST_FLAGS) ./test/chart/

.PHONY: test-monitoring
test-monitoring: test-rules ## The rules' tests, the dashboard lint, and the dashboard and rules against a real Prometheus (test/promcheck).
	go test $(GO_TEST_FLAGS) ./test/promcheck/

##@ Build

.PHONY: build
build: ## Build bin/retention-operator, the outreach runner bin/retention-outreach and the kubectl plugin bin/kubectl-retention.
	CGO_ENABLED=0 go build -trimpath -o bin/retention-operator .
	CGO_ENABLED=0 go build -trimpath -o bin/retention-outreach ./cmd/retention-outreach
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-retention ./cmd/kubectl-retention

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the markers, and the chart's copies of them.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart

.PHONY: generate
generate: ## Generate deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: monitoring
monitoring: ## Generate the PrometheusRule and the Grafana dashboard from their sources.
	hack/gen-prometheusrule.sh config/prometheus/prometheusrule.yaml
	go run ./hack/gen-dashboard -o config/grafana/retention-operator.json
	$(MAKE) --no-print-directory chart

.PHONY: chart
chart: ## Generate the chart's CRD templates, RBAC rules, Prometheus rules and dashboard from config/ (hack/gen-chart).
	go run ./hack/gen-chart

.PHONY: tools
tools: ## Install the pinned tools into the cache (idempotent).
	hack/tools.sh all

##@ Deploy

.PHONY: docker-build
docker-build: ## Build the container image IMG.
	docker build -t $(IMG) .

.PHONY: install
install: ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every object of these kinds).
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with image IMG.
	cd config/manager && $(KUBECTL) kustomize . >/dev/null
	$(KUBECTL) kustomize config/default | sed 's|controller:latest|$(IMG)|g' | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ kubectl plugin

# PLUGIN_DIR is where install-plugin puts kubectl-retention: $(GOBIN) when
# set, else ~/.local/bin. Any directory on the PATH works, e.g.
# `sudo make install-plugin PLUGIN_DIR=/usr/local/bin`.
PLUGIN_DIR ?= $(or $(shell go env GOBIN),$(HOME)/.local/bin)

.PHONY: install-plugin
install-plugin: ## Build bin/kubectl-retention and copy it to PLUGIN_DIR ($(GOBIN), else ~/.local/bin), where kubectl finds it as `kubectl retention`.
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-retention ./cmd/kubectl-retention
	install -d "$(PLUGIN_DIR)"
	install -m 0755 bin/kubectl-retention "$(PLUGIN_DIR)/kubectl-retention"
	@case ":$$PATH:" in *":$(PLUGIN_DIR):"*) ;; *) echo "note: $(PLUGIN_DIR) is not on your PATH; add it so kubectl finds the plugin" >&2;; esac
