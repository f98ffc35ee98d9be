package store

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// Validation of parameters, shared by the drivers: a parameter that can
// never work is an ErrInvalid before any SQL runs.

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// checkKey requires a non-empty, valid UTF-8 key without NUL bytes.
func checkKey(field, v string) error {
	if v == "" {
		return invalid("%s is empty", field)
	}
	return checkText(field, v)
}

func checkText(field, v string) error {
	if !utf8.ValidString(v) {
		return invalid("%s is not valid UTF-8", field)
	}
	for i := 0; i < len(v); i++ {
		if v[i] == 0 {
			return invalid("%s contains a NUL byte", field)
		}
	}
	return nil
}

// Validate checks the parameters.
func (p *SnapshotWriteParams) Validate() error {
	if p == nil {
		return invalid("nil SnapshotWriteParams")
	}
	return checkKey("source", p.Source)
}

// Validate checks the parameters.
func (p *SnapshotScanParams) Validate() error {
	if p == nil {
		return invalid("nil SnapshotScanParams")
	}
	if p.SnapshotID <= 0 {
		return invalid("snapshot id %d", p.SnapshotID)
	}
	return nil
}

// Validate checks the parameters.
func (p *SnapshotPruneParams) Validate() error {
	if p == nil {
		return invalid("nil SnapshotPruneParams")
	}
	if p.Keep < 0 {
		return invalid("keep %d is negative", p.Keep)
	}
	return checkKey("source", p.Source)
}

// Validate checks the parameters.
func (p *MembershipApplyParams) Validate() error {
	if p == nil {
		return invalid("nil MembershipApplyParams")
	}
	if p.SnapshotID <= 0 {
		return invalid("snapshot id %d", p.SnapshotID)
	}
	switch c := p.Changes; {
	case c == nil && p.Members == nil:
		return invalid("neither Members nor Changes")
	case c != nil && p.Members != nil:
		return invalid("both Members and Changes")
	case c != nil && (c.Entered == nil || c.Exited == nil):
		return invalid("nil Changes.Entered or Changes.Exited")
	case c != nil && c.BaseVersion <= 0:
		return invalid("base version %d", c.BaseVersion)
	}
	return checkKey("segment", p.Segment)
}

// Validate checks the parameters.
func (p *MembershipScanParams) Validate() error {
	if p == nil {
		return invalid("nil MembershipScanParams")
	}
	if p.EnteredSince < 0 {
		return invalid("entered-since snapshot %d", p.EnteredSince)
	}
	return checkKey("segment", p.Segment)
}

// CheckMemberID validates one customer id of a membership.
func CheckMemberID(id string) error { return checkKey("customer id", id) }

// CheckKey validates a key (a non-empty text without NUL bytes, in valid
// UTF-8) passed to a method without a Params struct; the error names field.
func CheckKey(field, v string) error { return checkKey(field, v) }

// Valid reports whether p is one of the RunPhase constants.
func (p RunPhase) Valid() bool {
	switch p {
	case PhasePending, PhaseMaterialized, PhaseSending, PhaseMeasuring, PhaseSucceeded, PhaseFailed, PhaseCancelled:
		return true
	}
	return false
}

// Final reports whether p is a phase a run never leaves on its own
// (Succeeded, Failed, Cancelled).
func (p RunPhase) Final() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCancelled
}

// Validate checks the parameters.
func (p *RunCreateParams) Validate() error {
	if p == nil {
		return invalid("nil RunCreateParams")
	}
	if err := checkKey("run id", p.RunID); err != nil {
		return err
	}
	if err := checkKey("campaign", p.Campaign); err != nil {
		return err
	}
	if err := checkKey("channel", p.Channel); err != nil {
		return err
	}
	if p.Shards < 1 {
		return invalid("run %s: shards %d, want at least 1", p.RunID, p.Shards)
	}
	if math.IsNaN(p.HoldoutPercent) || p.HoldoutPercent < 0 || p.HoldoutPercent > 100 {
		return invalid("run %s: holdout percent %v, want 0 to 100", p.RunID, p.HoldoutPercent)
	}
	if err := checkText("campaign uid", p.CampaignUID); err != nil {
		return err
	}
	if err := checkText("segment", p.Segment); err != nil {
		return err
	}
	if p.SnapshotID < 0 {
		return invalid("run %s: snapshot id %d", p.RunID, p.SnapshotID)
	}
	if p.ConversionWindow < 0 {
		return invalid("run %s: conversion window %v is negative", p.RunID, p.ConversionWindow)
	}
	return nil
}

// Validate checks the parameters.
func (p *RunSetPhaseParams) Validate() error {
	if p == nil {
		return invalid("nil RunSetPhaseParams")
	}
	if err := checkKey("run id", p.RunID); err != nil {
		return err
	}
	if !p.To.Valid() {
		return invalid("run %s: unknown phase %q", p.RunID, p.To)
	}
	for _, f := range p.From {
		if !f.Valid() {
			return invalid("run %s: unknown phase %q", p.RunID, f)
		}
	}
	return nil
}

// Validate checks the parameters.
func (p *RunMaterializeParams) Validate() error {
	if p == nil {
		return invalid("nil RunMaterializeParams")
	}
	if err := checkKey("run id", p.RunID); err != nil {
		return err
	}
	if p.Plan == nil {
		return invalid("run %s: nil Plan", p.RunID)
	}
	if p.MaxPerRun < 0 {
		return invalid("run %s: max per run %d is negative", p.RunID, p.MaxPerRun)
	}
	if p.EnteredSince < 0 {
		return invalid("run %s: entered-since snapshot %d", p.RunID, p.EnteredSince)
	}
	for _, seg := range p.SuppressSegments {
		if err := checkKey("suppression segment", seg); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the parameters.
func (p *OptOutAddParams) Validate() error {
	if p == nil {
		return invalid("nil OptOutAddParams")
	}
	if err := checkKey("channel", p.Channel); err != nil {
		return err
	}
	if err := checkKey("customer id", p.CustomerID); err != nil {
		return err
	}
	return checkText("via", p.Via)
}

// Normalize fills a new target's defaults and checks it against the run's
// shard count.
func (t NewTarget) Normalize(shards int32) (NewTarget, error) {
	if err := checkKey("customer id", t.CustomerID); err != nil {
		return t, err
	}
	for _, f := range [...]struct{ name, v string }{
		{"variant", t.Variant}, {"reason", t.Reason},
		{"address", t.Data.Address}, {"locale", t.Data.Locale}, {"time zone", t.Data.TimeZone},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return t, fmt.Errorf("target %s: %w", t.CustomerID, err)
		}
	}
	if t.Shard < 0 || t.Shard >= shards {
		return t, invalid("target %s: shard %d out of [0, %d)", t.CustomerID, t.Shard, shards)
	}
	if math.IsNaN(t.Data.ExpectedValue) || math.IsInf(t.Data.ExpectedValue, 0) ||
		math.IsNaN(t.Data.BaseSpend) || math.IsInf(t.Data.BaseSpend, 0) {
		return t, invalid("target %s: expected value %v, base spend %v: want finite numbers", t.CustomerID, t.Data.ExpectedValue, t.Data.BaseSpend)
	}
	switch t.Group {
	case "":
		t.Group = GroupTreatment
	case GroupTreatment, GroupHoldout, GroupExcluded:
	default:
		return t, invalid("target %s: unknown group %q", t.CustomerID, t.Group)
	}
	switch t.State {
	case "":
		switch t.Group {
		case GroupHoldout:
			t.State = StateSkipped
			if t.Reason == "" {
				t.Reason = ReasonHoldout
			}
		case GroupExcluded:
			t.State = StateSkipped
		default:
			t.State = StatePending
		}
	case StatePending:
		if t.Group != GroupTreatment {
			return t, invalid("target %s: a %s target is never pending", t.CustomerID, t.Group)
		}
	case StateSkipped:
	default:
		return t, invalid("target %s: cannot insert in state %q (pending or skipped)", t.CustomerID, t.State)
	}
	if t.State == StateSkipped && t.Reason == "" {
		return t, invalid("target %s: %s target skipped without a reason", t.CustomerID, t.Group)
	}
	if t.State == StatePending {
		t.Reason = ""
	}
	return t, nil
}

// Validate checks the parameters (each target is checked by Normalize).
func (p *TargetInsertParams) Validate() error {
	if p == nil {
		return invalid("nil TargetInsertParams")
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetClaimParams) Validate() error {
	if p == nil {
		return invalid("nil TargetClaimParams")
	}
	if p.Limit < 1 {
		return invalid("claim limit %d, want at least 1", p.Limit)
	}
	if p.Shard < 0 {
		return invalid("shard %d", p.Shard)
	}
	if err := checkText("token", p.Token); err != nil {
		return err
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetSetSentParams) Validate() error {
	if p == nil {
		return invalid("nil TargetSetSentParams")
	}
	if err := checkText("token", p.Token); err != nil {
		return err
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetSetFailedParams) Validate() error {
	if p == nil {
		return invalid("nil TargetSetFailedParams")
	}
	for _, f := range p.Failures {
		if err := checkText("error", f.Error); err != nil {
			return err
		}
	}
	if err := checkText("token", p.Token); err != nil {
		return err
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetSetSkippedParams) Validate() error {
	if p == nil {
		return invalid("nil TargetSetSkippedParams")
	}
	for _, s := range p.Skips {
		if err := checkKey("reason", s.Reason); err != nil {
			return err
		}
	}
	if err := checkText("token", p.Token); err != nil {
		return err
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetScanParams) Validate() error {
	if p == nil {
		return invalid("nil TargetScanParams")
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *TargetWaitingParams) Validate() error {
	if p == nil {
		return invalid("nil TargetWaitingParams")
	}
	if p.Shard < 0 {
		return invalid("negative shard")
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *ConversionRecordParams) Validate() error {
	if p == nil {
		return invalid("nil ConversionRecordParams")
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *RunMeasureParams) Validate() error {
	if p == nil {
		return invalid("nil RunMeasureParams")
	}
	if p.SnapshotID <= 0 {
		return invalid("snapshot id %d", p.SnapshotID)
	}
	if p.Measure == nil {
		return invalid("no Measure function")
	}
	return checkKey("run id", p.RunID)
}

// Validate checks the parameters.
func (p *ContactCountsParams) Validate() error {
	if p == nil {
		return invalid("nil ContactCountsParams")
	}
	if err := checkKey("channel", p.Channel); err != nil {
		return err
	}
	n := 0
	if p.RunID != "" {
		n++
	}
	if p.Segment != "" {
		n++
	}
	if p.CustomerIDs != nil {
		n++
	}
	if n != 1 {
		return invalid("contact counts need exactly one audience (run, segment or customer ids), got %d", n)
	}
	return nil
}
