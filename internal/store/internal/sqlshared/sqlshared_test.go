package sqlshared

import (
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/retention-dev/retention-operator/internal/store"
)

// TestDollarPlaceholdersOnSQLite checks what the shared SQL relies on:
// modernc.org/sqlite binds $n to the n-th argument, whatever the order the
// parameters appear in, and a parameter may repeat; true and false are 1
// and 0.
func TestDollarPlaceholdersOnSQLite(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var a, b, ab string
	var yes, no, or int64
	if err := db.QueryRow("SELECT $2, $1, $2 || $1, true, false, ('x' <> 'x' OR $3)", "one", "two", true).
		Scan(&a, &b, &ab, &yes, &no, &or); err != nil {
		t.Fatal(err)
	}
	if a != "two" || b != "one" || ab != "twoone" || yes != 1 || no != 0 || or != 1 {
		t.Errorf("got %q %q %q %d %d %d", a, b, ab, yes, no, or)
	}
	var n int64
	if err := db.QueryRow("SELECT count(*) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 LIMIT $2 OFFSET $1)", 1, NoLimit).Scan(&n); err != nil || n != 2 {
		t.Errorf("LIMIT NoLimit OFFSET 1 = %d, %v; want 2", n, err)
	}
}

func TestAudienceQueryParameters(t *testing.T) {
	t.Parallel()
	in := func(n int) string { return fmt.Sprintf("IN ($%d)", n) }
	for _, tc := range []struct {
		q    AudienceQuery
		has  []string
		hasn []string
	}{
		{AudienceQuery{SnapshotTable: `"snap_1"`, InList: in}, []string{`"snap_1"`, "$4"}, []string{"$5", "contacts", "sup."}},
		{AudienceQuery{SnapshotTable: `"snap_1"`, Suppress: true, InList: in}, []string{"IN ($5)"}, []string{"$6", "contacts"}},
		{AudienceQuery{SnapshotTable: `"snap_1"`, Cap: true, InList: in}, []string{"at >= $5"}, []string{"$6", "sup."}},
		{AudienceQuery{SnapshotTable: `"snap_1"`, Suppress: true, Cap: true, InList: in}, []string{"IN ($5)", "at >= $6"}, nil},
	} {
		sql := tc.q.SQL()
		for _, s := range tc.has {
			if !strings.Contains(sql, s) {
				t.Errorf("%+v: query lacks %q:\n%s", tc.q, s, sql)
			}
		}
		for _, s := range tc.hasn {
			if strings.Contains(sql, s) {
				t.Errorf("%+v: query has %q:\n%s", tc.q, s, sql)
			}
		}
	}
}

func TestAddTally(t *testing.T) {
	t.Parallel()
	tl := NewTally()
	AddTally(tl, "treatment", "a", "sent", "", 5, 2, 0, 0)
	AddTally(tl, "treatment", "b", "skipped", "quiet_hours", 1, 0, 0, 0)
	AddTally(tl, "treatment", "a", "skipped", "quiet_hours", 2, 1, 0, 0)
	AddTally(tl, "holdout", "a", "skipped", "holdout", 3, 1, 0, 0)
	AddTally(tl, "excluded", "b", "skipped", "over_max", 4, 0, 0, 0)
	want := &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{
		store.GroupTreatment: {Total: 8, Converted: 3, ByState: map[store.TargetState]int64{store.StateSent: 5, store.StateSkipped: 3},
			SkippedByReason: map[string]int64{store.ReasonQuietHours: 3}},
		store.GroupHoldout: {Total: 3, Converted: 1, ByState: map[store.TargetState]int64{store.StateSkipped: 3},
			SkippedByReason: map[string]int64{store.ReasonHoldout: 3}},
		store.GroupExcluded: {Total: 4, ByState: map[store.TargetState]int64{store.StateSkipped: 4},
			SkippedByReason: map[string]int64{store.ReasonOverMax: 4}},
	}, Variants: map[store.TargetGroup]map[string]*store.GroupTally{
		store.GroupTreatment: {
			"a": {Total: 7, Converted: 3, ByState: map[store.TargetState]int64{store.StateSent: 5, store.StateSkipped: 2},
				SkippedByReason: map[string]int64{store.ReasonQuietHours: 2}},
			"b": {Total: 1, ByState: map[store.TargetState]int64{store.StateSkipped: 1},
				SkippedByReason: map[string]int64{store.ReasonQuietHours: 1}},
		},
		store.GroupHoldout: {
			"a": {Total: 3, Converted: 1, ByState: map[store.TargetState]int64{store.StateSkipped: 3},
				SkippedByReason: map[string]int64{store.ReasonHoldout: 3}},
		},
	}}
	if !reflect.DeepEqual(tl, want) {
		t.Errorf("tally = %+v, want %+v", tl, want)
	}
	// A campaign tally keeps groups only.
	ct := NewCampaignTally()
	AddTally(ct, "treatment", "", "sent", "", 5, 2, 0, 0)
	if ct.Variants != nil || ct.Groups[store.GroupTreatment].Total != 5 {
		t.Errorf("campaign tally = %+v", ct)
	}
}

func TestSchemaError(t *testing.T) {
	t.Parallel()
	err := SchemaError(1, 2)
	if want := "store schema is at version 1; this binary needs version 2: start the operator, which migrates"; !strings.Contains(err.Error(), want) {
		t.Errorf("SchemaError(1, 2) = %q, want it to contain %q", err, want)
	}
	if err := SchemaError(3, 2); !strings.Contains(err.Error(), "upgrade") {
		t.Errorf("SchemaError(3, 2) = %q", err)
	}
}
