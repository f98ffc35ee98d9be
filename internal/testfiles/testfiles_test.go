package testfiles

import (
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCDNOWSample: the locator finds the CDNOW sample in the repository's
// testdata/ and it is the whole sample: 6,919 rows of 2,357 customers,
// every row well formed and within the observed period.
func TestCDNOWSample(t *testing.T) {
	p := CDNOWSample(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "testdata", "cdnow_sample.csv"); p != want {
		t.Errorf("CDNOWSample = %s, want %s", p, want)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := csv.NewReader(f)
	hdr, err := rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(hdr, ","); got != "customer_id,date,cds,amount" {
		t.Fatalf("header %q, want customer_id,date,cds,amount", got)
	}
	first, last := time.Date(1997, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1998, 6, 30, 0, 0, 0, 0, time.UTC)
	rows, customers := 0, map[string]bool{}
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows++
		customers[rec[0]] = true
		d, err := time.Parse("20060102", rec[1])
		if err != nil || d.Before(first) || d.After(last) {
			t.Errorf("row %d: date %q not in 1997-01-01 … 1998-06-30 (%v)", rows, rec[1], err)
		}
		if n, err := strconv.Atoi(rec[2]); err != nil || n < 0 {
			t.Errorf("row %d: cds %q", rows, rec[2])
		}
		if a, err := strconv.ParseFloat(rec[3], 64); err != nil || a < 0 {
			t.Errorf("row %d: amount %q", rows, rec[3])
		}
	}
	if rows != 6919 || len(customers) != 2357 {
		t.Errorf("%d rows of %d customers, want 6,919 rows of 2,357 customers", rows, len(customers))
	}
}

// TestLocateOnlyInTestdata: the locator reads the repository's testdata/
// and nothing else. In a fake checkout whose testdata/ lacks the file, a
// copy in a shared data folder beside it (where the data used to be read from)
// is not found; the lookup fails and says where the file belongs. With the
// file in testdata/, it is found from a package directory below the root.
func TestLocateOnlyInTestdata(t *testing.T) {
	base := t.TempDir()
	repo := filepath.Join(base, "repo")
	pkg := filepath.Join(repo, "internal", "pkg")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(repo, "go.mod"), "module example.com/repo\n")
	write(filepath.Join(pkg, "x.go"), "package pkg\n")
	write(filepath.Join(base, "shared", "data", "cdnow", "cdnow_sample.csv"), "customer_id,date,cds,amount\n")
	write(filepath.Join(base, "shared", "data", "cdnow_sample.csv"), "customer_id,date,cds,amount\n")
	t.Setenv("RETENTION_SHARED_DATA", filepath.Join(base, "shared", "data")) // the old override: ignored

	if p, err := locate(pkg, "cdnow_sample.csv"); err == nil {
		t.Fatalf("found %s without testdata/cdnow_sample.csv", p)
	} else if !strings.Contains(err.Error(), filepath.Join(repo, "testdata", "cdnow_sample.csv")) {
		t.Errorf("error %q does not name the missing testdata file", err)
	}

	want := filepath.Join(repo, "testdata", "cdnow_sample.csv")
	write(want, "customer_id,date,cds,amount\n")
	if p, err := locate(pkg, "cdnow_sample.csv"); err != nil || p != want {
		t.Errorf("locate = %q, %v; want %s", p, err, want)
	}

	if _, err := locate(base, "cdnow_sample.csv"); err == nil && !hasGoModAbove(base) {
		t.Error("found a file outside any module")
	}
}

// hasGoModAbove reports whether a go.mod is in dir or above (the temporary
// directory might be inside a module on an odd machine).
func hasGoModAbove(dir string) bool {
	_, err := repoRoot(dir)
	return err == nil
}
