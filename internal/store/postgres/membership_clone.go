package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// MembershipClone implements store.Store, in one transaction.
func (s *Store) MembershipClone(ctx context.Context, from, to string) error {
	if err := store.CheckKey("segment", from); err != nil {
		return err
	}
	if err := store.CheckKey("segment", to); err != nil {
		return err
	}
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, sqlshared.MembershipCloneExists, to).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s has a membership: %w", to, store.ErrInvalid)
		}
		tag, err := tx.Exec(ctx, sqlshared.MembershipCloneSegment, from, to)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("membership of %s: %w", from, store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, sqlshared.MembershipCloneMembers, from, to)
		return err
	})
	if err != nil {
		return fmt.Errorf("cloning the membership of %s to %s: %w", from, to, err)
	}
	return nil
}
