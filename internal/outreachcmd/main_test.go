package outreachcmd

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// TestMain lets the test binary be the runner and the benchmark's sink
// as child processes: RETENTION_CLI_RUN=outreach runs Main on the
// arguments (RETENTION_CLI_CPUPROFILE / _MEMPROFILE write the runner's
// profiles); RETENTION_CLI_RUN=sink runs countingSink.
func TestMain(m *testing.M) {
	switch os.Getenv("RETENTION_CLI_RUN") {
	case "outreach":
		os.Exit(profiled(func() int { return Main(os.Args[1:], os.Stderr) }))
	case "sink":
		os.Exit(countingSink(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func profiled(run func() int) int {
	if path := os.Getenv("RETENTION_CLI_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv("RETENTION_CLI_MEMPROFILE"); path != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
			}
		}()
	}
	return run()
}
