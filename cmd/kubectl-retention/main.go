// Command kubectl-retention is the `kubectl retention` plugin: put it on
// the PATH (`make install-plugin`) and kubectl finds it. See
// plugin/ for the verbs and their exit codes.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/retention-dev/retention-operator/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	env := &plugin.Env{Stdout: os.Stdout, Stderr: os.Stderr}
	code := env.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
