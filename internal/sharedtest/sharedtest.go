// Package sharedtest locates the data sets that tests and benchmarks read
// from ../shared/data beside the repository (real data no one on the
// project wrote; never copied into the repository). A missing data set
// fails the test: a skipped test would pass in CI without testing anything.
package sharedtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// DataDirEnv overrides where the shared data sets are (default:
// ../shared/data relative to the repository root).
const DataDirEnv = "RETENTION_SHARED_DATA"

// CDNOWSample returns the path of the CDNOW sample (cdnow_sample.csv), the
// data set of the BG/NBD paper, or fails the test.
func CDNOWSample(t testing.TB) string {
	t.Helper()
	return file(t, "cdnow", "cdnow_sample.csv")
}

func file(t testing.TB, parts ...string) string {
	t.Helper()
	dir, err := dataDir()
	if err != nil {
		t.Fatalf("locating the shared data: %v", err)
	}
	p := filepath.Join(append([]string{dir}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared data set %s is missing (%v): the tests need ../shared/data beside the repository, or %s set", p, err, DataDirEnv)
	}
	return p
}

// dataDir is $RETENTION_SHARED_DATA, or ../shared/data beside the
// repository root (the directory holding go.mod, found from the test's
// working directory upwards).
func dataDir() (string, error) {
	if d := os.Getenv(DataDirEnv); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "data"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
