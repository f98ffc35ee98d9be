// Package chart holds the tests of the Helm chart charts/retention-operator
// (`make test-chart`): they render it with the pinned helm of the tools
// cache (`make tools`) and assert on the objects — the restricted security
// context, the labels, what each toggle adds or removes, the CRDs' keep
// policy, a schema that refuses unknown keys, the CRDs, the RBAC rules,
// the Prometheus rules and the dashboard equal to config/'s — and apply
// them with a server-side dry run to a real kube-apiserver (envtest) that
// has the Prometheus Operator's CRDs.
package chart
