package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
)

// sqlStore is the backend-neutral implementation of iam.Store and
// mandate.Ledger over database/sql. Both dialects accept the same SQL:
// $n placeholders, INSERT ... ON CONFLICT, JSON bodies in TEXT columns and
// times as BIGINT Unix microseconds.
type sqlStore struct {
	db      *sql.DB
	backend string
}

// DB exposes the handle for tests that must inspect the raw state.
func (s *sqlStore) DB() *sql.DB { return s.db }

// Backend reports "sqlite" or "postgres".
func (s *sqlStore) Backend() string { return s.backend }

// Close closes the database. It is safe to call twice.
func (s *sqlStore) Close() error { return s.db.Close() }

func enc(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func (s *sqlStore) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("iam/store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("iam/store: commit: %w", err)
	}
	return nil
}

func queryJSON[T any](ctx context.Context, db *sql.DB, q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("iam/store: query: %w", err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("iam/store: scan: %w", err)
		}
		var v T
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			return nil, fmt.Errorf("iam/store: decode: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("iam/store: rows: %w", err)
	}
	return out, nil
}

// SourcePersons implements iam.Store.
func (s *sqlStore) SourcePersons(ctx context.Context, source string) ([]iam.Person, error) {
	return queryJSON[iam.Person](ctx, s.db, `SELECT body FROM persons WHERE source = $1 ORDER BY id`, source)
}

// AllSourcePersons implements iam.Store.
func (s *sqlStore) AllSourcePersons(ctx context.Context) ([]iam.Person, error) {
	return queryJSON[iam.Person](ctx, s.db, `SELECT body FROM persons ORDER BY id, source`)
}

// PersonContributions implements iam.Store.
func (s *sqlStore) PersonContributions(ctx context.Context, id string) ([]iam.Person, error) {
	return queryJSON[iam.Person](ctx, s.db, `SELECT body FROM persons WHERE id = $1 ORDER BY source`, id)
}

// SaveSourcePersons implements iam.Store.
func (s *sqlStore) SaveSourcePersons(ctx context.Context, source string, upsert []iam.Person, removed []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		up, err := tx.PrepareContext(ctx, `INSERT INTO persons (source, id, body) VALUES ($1, $2, $3)
			ON CONFLICT (source, id) DO UPDATE SET body = excluded.body`)
		if err != nil {
			return fmt.Errorf("iam/store: prepare: %w", err)
		}
		defer up.Close()
		for i := range upsert {
			p := upsert[i]
			p.Source = source
			body, err := enc(p)
			if err != nil {
				return err
			}
			if _, err := up.ExecContext(ctx, source, p.ID, body); err != nil {
				return fmt.Errorf("iam/store: save person (source=%s id=%s): %w", source, p.ID, err)
			}
		}
		for _, id := range removed {
			var body string
			err := tx.QueryRowContext(ctx, `SELECT body FROM persons WHERE source = $1 AND id = $2`, source, id).Scan(&body)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("iam/store: read person (source=%s id=%s): %w", source, id, err)
			}
			var p iam.Person
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				return fmt.Errorf("iam/store: decode person: %w", err)
			}
			p.Removed = true
			nb, err := enc(p)
			if err != nil {
				return err
			}
			if _, err := up.ExecContext(ctx, source, id, nb); err != nil {
				return fmt.Errorf("iam/store: tombstone (source=%s id=%s): %w", source, id, err)
			}
		}
		return nil
	})
}

// SetBlocked implements iam.Store.
func (s *sqlStore) SetBlocked(ctx context.Context, bp iam.BlockedPerson) error {
	source, id := bp.Source, bp.ID
	if len(bp.Missing) == 0 {
		_, err := s.db.ExecContext(ctx, `DELETE FROM blocked WHERE source = $1 AND id = $2`, source, id)
		return wrap(err, "unblock")
	}
	body, err := enc(bp)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO blocked (source, id, body) VALUES ($1, $2, $3)
		ON CONFLICT (source, id) DO UPDATE SET body = excluded.body`, source, id, body)
	return wrap(err, "block")
}

// Blocked implements iam.Store.
func (s *sqlStore) Blocked(ctx context.Context) ([]iam.BlockedPerson, error) {
	return queryJSON[iam.BlockedPerson](ctx, s.db, `SELECT body FROM blocked ORDER BY source, id`)
}

// SavePendingImport implements iam.Store.
func (s *sqlStore) SavePendingImport(ctx context.Context, pi iam.PendingImport) error {
	body, err := enc(pi)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO pending_imports (id, body) VALUES ($1, $2)`, pi.ID, body)
	return wrap(err, "save pending import")
}

// PendingImport implements iam.Store.
func (s *sqlStore) PendingImport(ctx context.Context, id string) (iam.PendingImport, error) {
	out, err := queryJSON[iam.PendingImport](ctx, s.db, `SELECT body FROM pending_imports WHERE id = $1`, id)
	if err != nil {
		return iam.PendingImport{}, err
	}
	if len(out) == 0 {
		return iam.PendingImport{}, fmt.Errorf("%w: pending import (id=%s)", iam.ErrNotFound, id)
	}
	return out[0], nil
}

// PendingImports implements iam.Store.
func (s *sqlStore) PendingImports(ctx context.Context) ([]iam.PendingImport, error) {
	return queryJSON[iam.PendingImport](ctx, s.db, `SELECT body FROM pending_imports ORDER BY id`)
}

// DeletePendingImport implements iam.Store.
func (s *sqlStore) DeletePendingImport(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM pending_imports WHERE id = $1`, id)
	return wrap(err, "delete pending import")
}

// AddGrant implements iam.Store.
func (s *sqlStore) AddGrant(ctx context.Context, g iam.Grant) error {
	body, err := enc(g)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO grants (id, person, body) VALUES ($1, $2, $3)`, g.ID, g.PersonID, body)
	return wrap(err, "add grant")
}

// Grants implements iam.Store.
func (s *sqlStore) Grants(ctx context.Context) ([]iam.Grant, error) {
	return queryJSON[iam.Grant](ctx, s.db, `SELECT body FROM grants ORDER BY id`)
}

// RevokeGrant implements iam.Store.
func (s *sqlStore) RevokeGrant(ctx context.Context, id, by string, at time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var body string
		err := tx.QueryRowContext(ctx, `SELECT body FROM grants WHERE id = $1`, id).Scan(&body)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: grant (id=%s)", iam.ErrNotFound, id)
		}
		if err != nil {
			return wrap(err, "read grant")
		}
		var g iam.Grant
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			return wrap(err, "decode grant")
		}
		g.RevokedAt, g.RevokedBy = at, by
		nb, err := enc(g)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE grants SET body = $1 WHERE id = $2`, nb, id)
		return wrap(err, "revoke grant")
	})
}

// AddExclusion implements iam.Store.
func (s *sqlStore) AddExclusion(ctx context.Context, x iam.Exclusion) error {
	body, err := enc(x)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO exclusions (person, body) VALUES ($1, $2)
		ON CONFLICT (person) DO UPDATE SET body = excluded.body`, x.PersonID, body)
	return wrap(err, "add exclusion")
}

// Exclusions implements iam.Store.
func (s *sqlStore) Exclusions(ctx context.Context) ([]iam.Exclusion, error) {
	return queryJSON[iam.Exclusion](ctx, s.db, `SELECT body FROM exclusions ORDER BY person`)
}

// SetDisabledSince implements iam.Store.
func (s *sqlStore) SetDisabledSince(ctx context.Context, target, ref string, at time.Time) error {
	if at.IsZero() {
		_, err := s.db.ExecContext(ctx, `DELETE FROM disabled WHERE target = $1 AND ref = $2`, target, ref)
		return wrap(err, "clear disabled")
	}
	// keep the first moment: re-disabling must not restart the grace period
	_, err := s.db.ExecContext(ctx, `INSERT INTO disabled (target, ref, at) VALUES ($1, $2, $3) ON CONFLICT (target, ref) DO NOTHING`,
		target, ref, at.UTC().UnixMicro())
	return wrap(err, "set disabled")
}

// DisabledSince implements iam.Store.
func (s *sqlStore) DisabledSince(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT target, ref, at FROM disabled`)
	if err != nil {
		return nil, wrap(err, "query disabled")
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var t, r string
		var at int64
		if err := rows.Scan(&t, &r, &at); err != nil {
			return nil, wrap(err, "scan disabled")
		}
		out[t+"|"+r] = time.UnixMicro(at).UTC()
	}
	return out, wrap(rows.Err(), "rows disabled")
}

// SetFailed implements iam.Store.
func (s *sqlStore) SetFailed(ctx context.Context, actionID string, failed bool, msg string) error {
	if !failed {
		_, err := s.db.ExecContext(ctx, `DELETE FROM failed WHERE action = $1`, actionID)
		return wrap(err, "clear failed")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO failed (action, msg) VALUES ($1, $2) ON CONFLICT (action) DO UPDATE SET msg = excluded.msg`, actionID, msg)
	return wrap(err, "set failed")
}

// Failed implements iam.Store.
func (s *sqlStore) Failed(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT action FROM failed`)
	if err != nil {
		return nil, wrap(err, "query failed")
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, wrap(err, "scan failed")
		}
		out[a] = true
	}
	return out, wrap(rows.Err(), "rows failed")
}

// SaveDeviations implements iam.Store: it replaces the report.
func (s *sqlStore) SaveDeviations(ctx context.Context, ds []iam.Deviation) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM deviations`); err != nil {
			return wrap(err, "clear deviations")
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO deviations (key, seq, body) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`)
		if err != nil {
			return wrap(err, "prepare deviations")
		}
		defer st.Close()
		for i, d := range ds {
			body, err := enc(d)
			if err != nil {
				return err
			}
			if _, err := st.ExecContext(ctx, d.Key, i, body); err != nil {
				return wrap(err, "save deviation")
			}
		}
		return nil
	})
}

// Deviations implements iam.Store.
func (s *sqlStore) Deviations(ctx context.Context) ([]iam.Deviation, error) {
	return queryJSON[iam.Deviation](ctx, s.db, `SELECT body FROM deviations ORDER BY seq`)
}

// AddResolution implements iam.Store.
func (s *sqlStore) AddResolution(ctx context.Context, r iam.Resolution) error {
	body, err := enc(r)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO resolutions (key, body) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET body = excluded.body`, r.Key, body)
	return wrap(err, "add resolution")
}

// Resolutions implements iam.Store.
func (s *sqlStore) Resolutions(ctx context.Context) (map[string]iam.Resolution, error) {
	rs, err := queryJSON[iam.Resolution](ctx, s.db, `SELECT body FROM resolutions`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]iam.Resolution, len(rs))
	for _, r := range rs {
		out[r.Key] = r
	}
	return out, nil
}

// SaveCampaign implements iam.Store.
func (s *sqlStore) SaveCampaign(ctx context.Context, c iam.Campaign) error {
	body, err := enc(c)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO campaigns (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = excluded.body`, c.ID, body)
	return wrap(err, "save campaign")
}

// Campaign implements iam.Store.
func (s *sqlStore) Campaign(ctx context.Context, id string) (iam.Campaign, error) {
	cs, err := queryJSON[iam.Campaign](ctx, s.db, `SELECT body FROM campaigns WHERE id = $1`, id)
	if err != nil {
		return iam.Campaign{}, err
	}
	if len(cs) == 0 {
		return iam.Campaign{}, fmt.Errorf("%w: campaign (id=%s)", iam.ErrNotFound, id)
	}
	return cs[0], nil
}

// Campaigns implements iam.Store.
func (s *sqlStore) Campaigns(ctx context.Context) ([]iam.Campaign, error) {
	cs, err := queryJSON[iam.Campaign](ctx, s.db, `SELECT body FROM campaigns`)
	sort.Slice(cs, func(i, j int) bool { return cs[i].CreatedAt.Before(cs[j].CreatedAt) })
	return cs, err
}

// Audit implements iam.Store: append-only.
func (s *sqlStore) Audit(ctx context.Context, evs ...iam.AuditEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, ev := range evs {
			body, err := enc(ev)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit (at, body) VALUES ($1, $2)`, ev.At.UTC().UnixMicro(), body); err != nil {
				return wrap(err, "audit")
			}
		}
		return nil
	})
}

// AuditLog implements iam.Store: the newest limit events, oldest first.
func (s *sqlStore) AuditLog(ctx context.Context, limit int) ([]iam.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	evs, err := queryJSON[iam.AuditEvent](ctx, s.db, `SELECT body FROM (SELECT seq, body FROM audit ORDER BY seq DESC LIMIT $1) AS newest ORDER BY seq`, limit)
	return evs, err
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("iam/store: %s: %w", strings.TrimSpace(what), err)
}

// MandateActors implements mandate.Ledger.
func (s *sqlStore) MandateActors(ctx context.Context) ([]mandate.Actor, error) {
	return queryJSON[mandate.Actor](ctx, s.db, `SELECT body FROM mandate_actors ORDER BY uzi`)
}

// MandateActor implements mandate.Ledger.
func (s *sqlStore) MandateActor(ctx context.Context, uzi string) (mandate.Actor, bool, error) {
	as, err := queryJSON[mandate.Actor](ctx, s.db, `SELECT body FROM mandate_actors WHERE uzi = $1`, uzi)
	if err != nil || len(as) == 0 {
		return mandate.Actor{}, false, err
	}
	return as[0], true, nil
}

// PutMandateActor implements mandate.Ledger.
func (s *sqlStore) PutMandateActor(ctx context.Context, a mandate.Actor) error {
	body, err := enc(a)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO mandate_actors (uzi, body) VALUES ($1, $2) ON CONFLICT (uzi) DO UPDATE SET body = excluded.body`, a.UZI, body)
	return wrap(err, "put mandate actor")
}
