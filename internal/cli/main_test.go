package cli

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary run the commands themselves, so
// hack/bench-scoring.sh can use them before main.go dispatches to them:
//
//	RETENTION_CLI_RUN=score ./cli.test --csv FILE ...
//
// RETENTION_CLI_RUN=csvscan FILE times a plain encoding/csv scan of FILE
// (the floor of any CSV scoring); sourcescan FILE the internal/source
// reader into a counting sink (the floor of the read stage).
func TestMain(m *testing.M) {
	if cmd := os.Getenv("RETENTION_CLI_RUN"); cmd != "" {
		args := os.Args[1:]
		switch cmd {
		case "score":
			os.Exit(Score(args, os.Stdout, os.Stderr))
		case "generate":
			os.Exit(Generate(args, os.Stdout, os.Stderr))
		case "csvscan":
			os.Exit(csvScan(args, os.Stdout, os.Stderr))
		case "sourcescan":
			os.Exit(sourceScan(args, os.Stdout, os.Stderr))
		}
		fmt.Fprintf(os.Stderr, "unknown RETENTION_CLI_RUN command %q\n", cmd)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
