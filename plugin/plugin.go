// Package plugin is the `kubectl retention` plugin (cmd/kubectl-retention):
// get, status, suspend, resume, run, abort, retry, report, preview, erase and check against the API server of the
// current kubeconfig. Every verb writes to the Env's writers and returns an
// exit code, so tests run the verbs in-process against envtest.
//
// Exit codes: 0 success; 1 an error, or a run that failed or was cancelled,
// or `check api` not ready; 2 a bad command line; 3 `run --wait` timed out
// before the run reached the awaited phase, or `erase --wait` before the
// erasure completed.
package plugin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitUsage   = 2
	ExitTimeout = 3
)

// Scheme knows the core kinds, events.k8s.io and the retention kinds.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(retentionv1.AddToScheme(Scheme))
}

// ConnFlags are the kubectl-like connection flags every verb accepts.
type ConnFlags struct {
	Kubeconfig string
	Context    string
	Namespace  string
}

// Conn is a connection to an API server.
type Conn struct {
	Client client.Client
	Config *rest.Config
	// Namespace is -n, or else the kubeconfig context's namespace, or "default".
	Namespace string
}

// Env is where the plugin runs: its writers, how it connects, how often it polls.
type Env struct {
	Stdout, Stderr io.Writer
	// Connect builds the connection from the flags; nil means Kubeconfig
	// (kubectl's loading rules: --kubeconfig, $KUBECONFIG, ~/.kube/config).
	Connect func(ConnFlags) (*Conn, error)
	// Poll is the interval of `run --wait` and `check api --wait` (default 2s).
	Poll time.Duration
	// Now is the clock for ages (default time.Now).
	Now func() time.Time
}

// Kubeconfig connects the way kubectl does.
func Kubeconfig(f ConnFlags) (*Conn, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.Context}
	if f.Namespace != "" {
		overrides.Context.Namespace = f.Namespace
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, err
	}
	return &Conn{Client: c, Config: cfg, Namespace: ns}, nil
}

const usage = `kubectl retention: the retention operator's objects from kubectl.

Usage:
  kubectl retention get sources|segments|channels|campaigns|runs|erasures [NAME] [-n NS | -A] [--status-selector 'Ready!=True'] [-o table|json|yaml]
  kubectl retention status campaign|source|segment NAME [-n NS] [-o text|json|yaml]
  kubectl retention suspend campaign|source NAME [-n NS]
  kubectl retention resume campaign|source NAME [-n NS]
  kubectl retention run campaign NAME [-n NS] [--wait] [--for sent|measured] [--timeout 10m] [-o name|json|yaml]
  kubectl retention abort run NAME [-n NS] [--wait] [--timeout 5m]
  kubectl retention retry run NAME [-n NS] [--wait] [--timeout 10m]
  kubectl retention report campaign NAME [-n NS] [-o table|json|yaml] [--plot FILE.png]
  kubectl retention preview segment -f FILE [--against NAME] [-n NS] [-o table|json|yaml]
  kubectl retention erase customer ID... --source NAME [--from-file FILE|-] [--wait] [--timeout 10m] [-o name|json|yaml]
  kubectl retention check api [--wait 1m]

Every verb accepts --kubeconfig, --context and -n/--namespace.
Exit codes: 0 success; 1 error, a failed or cancelled run, or an API not ready;
2 bad command line; 3 run --wait or erase --wait timed out.
`

// Run runs one command line (without the program name) and returns the exit code.
func (e *Env) Run(ctx context.Context, args []string) int {
	if e.Connect == nil {
		e.Connect = Kubeconfig
	}
	if e.Poll == 0 {
		e.Poll = 2 * time.Second
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.Stdout, usage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	var err error
	switch args[0] {
	case "get":
		err = e.get(ctx, args[1:])
	case "status":
		err = e.status(ctx, args[1:])
	case "suspend":
		err = e.suspend(ctx, args[1:], true)
	case "resume":
		err = e.suspend(ctx, args[1:], false)
	case "run":
		err = e.run(ctx, args[1:])
	case "check":
		err = e.check(ctx, args[1:])
	case "erase":
		err = e.erase(ctx, args[1:])
	case "abort":
		err = e.abort(ctx, args[1:])
	case "retry":
		err = e.retry(ctx, args[1:])
	case "report":
		err = e.report(ctx, args[1:])
	case "preview":
		err = e.preview(ctx, args[1:])
	default:
		err = usageErrorf("unknown verb %q", args[0])
	}
	return e.exit(err)
}

func (e *Env) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(e.Stderr, "error: %v\n", err)
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.code == ExitUsage {
			fmt.Fprintf(e.Stderr, "See 'kubectl retention --help'.\n")
		}
		return ce.code
	}
	return ExitFailed
}

// codeError carries an exit code other than 1.
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &codeError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

// flags is a verb's flag set with the connection flags on it.
type flags struct {
	*flag.FlagSet
	conn ConnFlags
}

func (e *Env) newFlags(verb string) *flags {
	fs := flag.NewFlagSet("kubectl retention "+verb, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	f := &flags{FlagSet: fs}
	fs.StringVar(&f.conn.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file")
	fs.StringVar(&f.conn.Context, "context", "", "the kubeconfig context to use")
	fs.StringVar(&f.conn.Namespace, "namespace", "", "the namespace (default: the context's)")
	fs.StringVar(&f.conn.Namespace, "n", "", "shorthand for --namespace")
	return f
}

// parse parses flags anywhere among the arguments (as kubectl does) and
// returns the positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErrorf("%v", err)
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func outputFlag(f *flags, def string) *string {
	var o string
	f.StringVar(&o, "output", def, "output format")
	f.StringVar(&o, "o", def, "shorthand for --output")
	return &o
}

func checkOutput(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return usageErrorf("unknown output format %q (want one of %s)", o, strings.Join(allowed, ", "))
}
