package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Calls runs every method of s once and returns their errors by name. A
// panic fails the test.
func Calls(ctx context.Context, s store.Store) map[string]error {
	noop := func(*customer.Scored) error { return nil }
	errs := map[string]error{}
	call := func(name string, fn func() error) {
		errs[name] = fn()
	}
	call("SnapshotWrite", func() error {
		w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/s"})
		if err == nil {
			err = w.Add(&customer.Scored{ID: "x"})
			if err == nil {
				_, err = w.Commit()
			}
			w.Abort()
		}
		return err
	})
	call("SnapshotGetCurrent", func() error { _, err := s.SnapshotGetCurrent(ctx, "ns/s"); return err })
	call("SnapshotGetByID", func() error { _, err := s.SnapshotGetByID(ctx, 1); return err })
	call("SnapshotList", func() error { _, err := s.SnapshotList(ctx, "ns/s"); return err })
	call("SnapshotScan", func() error { return s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: 1}, noop) })
	call("SnapshotPrune", func() error { _, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/s"}); return err })
	call("SnapshotDeleteBySource", func() error { return s.SnapshotDeleteBySource(ctx, "ns/s") })
	call("MembershipApply", func() error {
		_, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: "ns/g", SnapshotID: 1, Members: store.MembersFromSlice([]string{"a"})})
		return err
	})
	call("MembershipScan", func() error {
		return s.MembershipScan(ctx, &store.MembershipScanParams{Segment: "ns/g"}, func(*store.Member) error { return nil })
	})
	call("MembershipGet", func() error { _, err := s.MembershipGet(ctx, "ns/g"); return err })
	call("MembershipCount", func() error { _, err := store.MembershipCount(ctx, s, "ns/g"); return err })
	call("MembershipDelete", func() error { return s.MembershipDelete(ctx, "ns/g") })
	call("RunCreate", func() error {
		_, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", Channel: "ns/ch", Shards: 1})
		return err
	})
	call("RunGet", func() error { _, err := s.RunGet(ctx, "r"); return err })
	call("RunTally", func() error { _, err := s.RunTally(ctx, "r"); return err })
	call("TargetInsert", func() error {
		_, err := s.TargetInsert(ctx, &store.TargetInsertParams{RunID: "r", Targets: []store.NewTarget{{CustomerID: "a"}}})
		return err
	})
	call("TargetClaim", func() error { _, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 1}); return err })
	call("TargetSetSent", func() error {
		_, err := s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: []string{"a"}})
		return err
	})
	call("TargetSetFailed", func() error {
		_, err := s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r", Failures: []store.TargetFailure{{CustomerID: "a"}}})
		return err
	})
	call("TargetSetSkipped", func() error {
		_, err := s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r", Skips: []store.TargetSkip{{CustomerID: "a", Reason: "x"}}})
		return err
	})
	call("TargetScan", func() error {
		return s.TargetScan(ctx, &store.TargetScanParams{RunID: "r"}, func(*store.Target) error { return nil })
	})
	call("ConversionRecord", func() error {
		_, err := s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r", Conversions: []store.Conversion{{CustomerID: "a"}}})
		return err
	})
	call("ContactCounts", func() error {
		return s.ContactCounts(ctx, &store.ContactCountsParams{Channel: "ns/ch", RunID: "r"}, func(string, int64) error { return nil })
	})
	call("RunSetPhase", func() error {
		_, err := s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r", To: store.PhaseSending})
		return err
	})
	call("RunMaterialize", func() error {
		_, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", Plan: func(*store.AudienceMember, *store.NewTarget) error { return nil }})
		return err
	})
	call("CampaignTally", func() error { _, err := s.CampaignTally(ctx, "uid"); return err })
	call("CampaignStrata", func() error { _, err := s.CampaignStrata(ctx, "uid"); return err })
	call("RunMeasure", func() error {
		_, err := s.RunMeasure(ctx, &store.RunMeasureParams{RunID: "r", SnapshotID: 1, Measure: func(*store.Baseline, *customer.Scored) store.Measured { return store.Measured{} }})
		return err
	})
	call("HoldoutGet", func() error { _, err := s.HoldoutGet(ctx, "uid", []string{"a"}); return err })
	call("OptOutAdd", func() error { return s.OptOutAdd(ctx, &store.OptOutAddParams{Channel: "ns/ch", CustomerID: "a"}) })
	call("OptOutFilter", func() error { _, err := s.OptOutFilter(ctx, "ns/ch", []string{"a"}); return err })
	call("OptOutDelete", func() error { return s.OptOutDelete(ctx, "ns/ch", "a") })
	call("Now", func() error { _, err := s.Now(ctx); return err })
	call("ErasureApply", func() error {
		_, err := s.ErasureApply(ctx, &store.ErasureApplyParams{Source: "ns/s", CustomerIDs: []string{"a"}})
		return err
	})
	call("MembershipClone", func() error { return s.MembershipClone(ctx, "ns/a", "ns/b") })
	call("TombstonesGet", func() error { _, err := s.TombstonesGet(ctx, "ns/s"); return err })
	call("ErasedFilter", func() error { _, err := s.ErasedFilter(ctx, "ns/s", []string{"a"}); return err })
	call("RunCancel", func() error { _, err := s.RunCancel(ctx, "r"); return err })
	call("RunDelete", func() error { return s.RunDelete(ctx, "r") })
	return errs
}

// ExpectAllFail fails the test unless every method of s returns an error
// within the time limit.
func ExpectAllFail(ctx context.Context, t *testing.T, s store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for name, err := range Calls(ctx, s) {
		if err == nil {
			t.Errorf("%s on a store that is down succeeded", name)
		}
	}
}

func exerciseDown(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("OpenUnreachable", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		url := d.DownURL(t)
		s, err := d.Open(ctx, url, store.Options{})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) of an unreachable store succeeded", url)
		}
		if _, err := store.Open(ctx, url, store.Options{}); err == nil {
			t.Fatalf("store.Open(%s) of an unreachable store succeeded", url)
		}
	})
	t.Run("UseAfterClose", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		if err := e.s.Close(); err != nil {
			t.Fatal(err)
		}
		for name, err := range Calls(ctx, e.s) {
			if err == nil {
				t.Errorf("%s after Close succeeded", name)
			} else if !errors.Is(err, store.ErrClosed) {
				t.Logf("%s after Close: %v (not ErrClosed)", name, err)
			}
		}
	})
}
