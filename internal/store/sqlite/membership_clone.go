package sqlite

import (
	"context"
	"database/sql"
	"fmt"

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
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var n int64
		if err := tx.QueryRowContext(ctx, sqlshared.MembershipCloneExists, to).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s has a membership: %w", to, store.ErrInvalid)
		}
		r, err := tx.ExecContext(ctx, sqlshared.MembershipCloneSegment, from, to)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return fmt.Errorf("membership of %s: %w", from, store.ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, sqlshared.MembershipCloneMembers, from, to)
		return err
	})
	if err != nil {
		return fmt.Errorf("cloning the membership of %s to %s: %w", from, to, wrapErr(err))
	}
	return nil
}
