// Package testfiles locates the data files tests read. They live in the
// repository's testdata/ directory (at the root, beside go.mod), so tests
// pass on a fresh clone with nothing beside it; this package looks nowhere
// else. A missing file fails the test: a skipped test would pass in CI
// without testing anything.
package testfiles

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir is the directory, relative to the repository root, that holds the
// files.
const Dir = "testdata"

// CDNOWSample returns the path of testdata/cdnow_sample.csv, the CDNOW
// sample of the BG/NBD paper (see testdata/README.md), or fails the test.
func CDNOWSample(t testing.TB) string {
	t.Helper()
	return Path(t, "cdnow_sample.csv")
}

// Path returns the path of testdata/name at the repository root, or fails
// the test.
func Path(t testing.TB, name string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("locating %s/%s: %v", Dir, name, err)
	}
	p, err := locate(wd, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// locate returns root/testdata/name, root being the first directory from
// dir upwards that holds go.mod, or an error when there is none or the
// file is missing.
func locate(dir, name string) (string, error) {
	root, err := repoRoot(dir)
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, Dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("test data %s is missing (%v): it is part of the repository (see %s/README.md); restore it with git", p, err, Dir)
	}
	return p, nil
}

// repoRoot returns the repository root: the first directory from dir
// upwards that holds go.mod.
func repoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in or above " + dir)
		}
		dir = parent
	}
}
