package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Enrolment is a verified inschrijftoken: the claims the caller extracted
// with package tokens plus the signed bytes exactly as received.
type Enrolment struct {
	ID           string // SAML Assertion ID
	Issuer       string
	URA          string
	BSN          string
	SignerUZI    string // UZI number of the card that signed it
	IssueInstant time.Time
	NotBefore    time.Time
	NotOnOrAfter time.Time
	CertNotAfter time.Time // NotAfter of the signing certificate
	Raw          []byte    // the signed assertion; never re-serialised
	RegisteredBy string    // who registered it (admin user, "api", ...)

	// Set by the store when read back.
	RegisteredAt time.Time
	Revocation   *Revocation
}

// Mandate is a verified mandaattoken plus its signed bytes.
type Mandate struct {
	ID            string
	Issuer        string
	URA           string
	GiverUZI      string   // mandaatgever UZI number
	GiverRole     string   // mandaatgever role code, e.g. "01.015"
	Mandated      []string // gemandateerden: "<UZI>", "<UZI>:<role>" or an application URN
	ApplicationID string
	Context       string // autorisatieregel/context URI
	IssueInstant  time.Time
	NotBefore     time.Time
	NotOnOrAfter  time.Time
	CertNotAfter  time.Time // NotAfter of the giver's signing (card) certificate
	Raw           []byte
	RegisteredBy  string

	// Set by the store when read back.
	RegisteredAt time.Time
	Revocation   *Revocation
}

// ValidUntil is the end of the mandate's validity: the earlier of
// NotOnOrAfter and the card certificate's NotAfter.
func (m *Mandate) ValidUntil() time.Time {
	if !m.CertNotAfter.IsZero() && m.CertNotAfter.Before(m.NotOnOrAfter) {
		return m.CertNotAfter
	}
	return m.NotOnOrAfter
}

// Revocation records who revoked a token, when and why.
type Revocation struct {
	At     time.Time
	By     string
	Reason string
}

// MandateQuery asks for a mandate covering one message.
type MandateQuery struct {
	URA           string
	GiverUZI      string // the responsible caregiver (HL7 overseer)
	Context       string // autorisatieregel/context
	ApplicationID string
	// Actor is the person or system acting under the mandate: "<UZI>:<role>",
	// "<UZI>" or an application URN. A mandated entry "<UZI>" covers any role
	// of that UZI number; "<UZI>:<role>" only that role. Empty skips the
	// actor check (the caller then vouches for the actor itself).
	Actor string
	At    time.Time
}

// TokenKind tells enrolments and mandates apart in listings.
type TokenKind string

// Token kinds.
const (
	KindEnrolment TokenKind = "enrolment"
	KindMandate   TokenKind = "mandate"
)

// TokenInfo is one row of a token listing (never the token body).
type TokenInfo struct {
	Kind         TokenKind
	ID           string
	URA          string
	BSN          string // enrolments
	GiverUZI     string // mandates
	Context      string // mandates
	Mandated     []string
	NotBefore    time.Time
	ValidUntil   time.Time // enrolment NotOnOrAfter; mandate min(NotOnOrAfter, card NotAfter)
	RegisteredAt time.Time
	Revocation   *Revocation
}

// ListFilter selects tokens for ListTokens. Zero fields do not filter.
type ListFilter struct {
	Kind           TokenKind
	URA            string
	BSN            string
	GiverUZI       string
	IncludeRevoked bool
	IncludeExpired bool
	Limit          int // default 1000
}

func (e *Enrolment) check() error {
	switch {
	case e.ID == "", e.Issuer == "", e.URA == "", e.BSN == "", len(e.Raw) == 0:
		return fmt.Errorf("%w: enrolment needs id, issuer, ura, bsn and raw bytes", ErrInvalid)
	case e.NotOnOrAfter.IsZero() || !e.NotBefore.Before(e.NotOnOrAfter):
		return fmt.Errorf("%w: enrolment validity window empty (id=%s)", ErrInvalid, e.ID)
	}
	return nil
}

func (m *Mandate) check() error {
	switch {
	case m.ID == "", m.Issuer == "", m.URA == "", m.GiverUZI == "", m.Context == "", len(m.Raw) == 0:
		return fmt.Errorf("%w: mandate needs id, issuer, ura, giver, context and raw bytes", ErrInvalid)
	case m.NotOnOrAfter.IsZero() || !m.NotBefore.Before(m.NotOnOrAfter):
		return fmt.Errorf("%w: mandate validity window empty (id=%s)", ErrInvalid, m.ID)
	case m.CertNotAfter.IsZero():
		return fmt.Errorf("%w: mandate needs the signing certificate's NotAfter (id=%s)", ErrInvalid, m.ID)
	}
	for _, a := range m.Mandated {
		if strings.TrimSpace(a) == "" {
			return fmt.Errorf("%w: empty mandated actor (id=%s)", ErrInvalid, m.ID)
		}
	}
	return nil
}

// existingSame checks a conflicting registration: same bytes is a no-op.
func existingSame(ctx context.Context, q querier, table, id string, sum []byte) error {
	var have []byte
	if err := q.queryRow(ctx, "SELECT raw_sha256 FROM "+table+" WHERE id = $1", id).Scan(&have); err != nil {
		return fmt.Errorf("store: read existing token (id=%s): %w", id, err)
	}
	if !bytes.Equal(have, sum) {
		return fmt.Errorf("%w (id=%s)", ErrDuplicate, id)
	}
	return nil
}

func (s *sqlStore) RegisterEnrolment(ctx context.Context, e Enrolment) error {
	if err := e.check(); err != nil {
		return err
	}
	sum := sha256.Sum256(e.Raw)
	now := s.opts.Now()
	return s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `INSERT INTO enrolments (id, issuer, ura, bsn, signer_uzi, issue_instant, not_before,
			not_on_or_after, cert_not_after, raw, raw_sha256, registered_at, registered_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Issuer, e.URA, e.BSN, e.SignerUZI, s.d.ts(e.IssueInstant), s.d.ts(e.NotBefore),
			s.d.ts(e.NotOnOrAfter), s.d.ts(e.CertNotAfter), e.Raw, sum[:], s.d.ts(now), e.RegisteredBy)
		if err != nil {
			return fmt.Errorf("store: register enrolment (id=%s): %w", e.ID, err)
		}
		if n == 0 {
			return existingSame(ctx, q, "enrolments", e.ID, sum[:])
		}
		return s.auditInTx(ctx, q, AuditRecord{Kind: AuditTokenRegistered, Actor: e.RegisteredBy, BSN: e.BSN,
			TokenIDs: []string{e.ID}, Outcome: "ok", Details: detailsJSON(map[string]any{"type": KindEnrolment, "ura": e.URA})})
	})
}

func (s *sqlStore) RegisterMandate(ctx context.Context, m Mandate) error {
	if err := m.check(); err != nil {
		return err
	}
	sum := sha256.Sum256(m.Raw)
	now := s.opts.Now()
	return s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `INSERT INTO mandates (id, issuer, ura, giver_uzi, giver_role, application_id, context,
			issue_instant, not_before, not_on_or_after, cert_not_after, valid_until, raw, raw_sha256, registered_at, registered_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id) DO NOTHING`,
			m.ID, m.Issuer, m.URA, m.GiverUZI, m.GiverRole, m.ApplicationID, m.Context,
			s.d.ts(m.IssueInstant), s.d.ts(m.NotBefore), s.d.ts(m.NotOnOrAfter), s.d.ts(m.CertNotAfter),
			s.d.ts(m.ValidUntil()), m.Raw, sum[:], s.d.ts(now), m.RegisteredBy)
		if err != nil {
			return fmt.Errorf("store: register mandate (id=%s): %w", m.ID, err)
		}
		if n == 0 {
			return existingSame(ctx, q, "mandates", m.ID, sum[:])
		}
		for _, a := range m.Mandated {
			if _, err := q.exec(ctx, `INSERT INTO mandate_actors (mandate_id, actor) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, m.ID, a); err != nil {
				return fmt.Errorf("store: register mandate actor (id=%s): %w", m.ID, err)
			}
		}
		return s.auditInTx(ctx, q, AuditRecord{Kind: AuditTokenRegistered, Giver: m.GiverUZI + ":" + m.GiverRole,
			Actor: m.RegisteredBy, TokenIDs: []string{m.ID}, Outcome: "ok",
			Details: detailsJSON(map[string]any{"type": KindMandate, "ura": m.URA, "context": m.Context, "mandated": m.Mandated})})
	})
}

const enrolmentCols = `id, issuer, ura, bsn, signer_uzi, issue_instant, not_before, not_on_or_after, cert_not_after,
	raw, registered_at, registered_by, revoked_at, revoked_by, revoke_reason`

func scanEnrolment(r scanner) (*Enrolment, error) {
	var e Enrolment
	var revAt time.Time
	var revBy, revReason string
	err := r.Scan(&e.ID, &e.Issuer, &e.URA, &e.BSN, &e.SignerUZI, tsScan{&e.IssueInstant}, tsScan{&e.NotBefore},
		tsScan{&e.NotOnOrAfter}, tsScan{&e.CertNotAfter}, &e.Raw, tsScan{&e.RegisteredAt}, &e.RegisteredBy,
		tsScan{&revAt}, nullString{&revBy}, nullString{&revReason})
	if err != nil {
		return nil, err
	}
	if !revAt.IsZero() {
		e.Revocation = &Revocation{At: revAt, By: revBy, Reason: revReason}
	}
	return &e, nil
}

func (s *sqlStore) FindEnrolment(ctx context.Context, ura, bsn string, at time.Time) (*Enrolment, error) {
	if ura == "" || bsn == "" {
		return nil, fmt.Errorf("%w: ura and bsn required", ErrInvalid)
	}
	e, err := scanEnrolment(s.b.hotRow(ctx, hotFindEnrolment, ura, bsn, s.d.ts(at)))
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%w: no valid enrolment (ura=%s)", ErrNotFound, ura)
	}
	if err != nil {
		return nil, fmt.Errorf("store: find enrolment: %w", err)
	}
	return e, nil
}

const mandateCols = `id, issuer, ura, giver_uzi, giver_role, application_id, context, issue_instant, not_before,
	not_on_or_after, cert_not_after, raw, registered_at, registered_by, revoked_at, revoked_by, revoke_reason`

func scanMandate(r scanner) (*Mandate, error) {
	var m Mandate
	var revAt time.Time
	var revBy, revReason string
	err := r.Scan(&m.ID, &m.Issuer, &m.URA, &m.GiverUZI, &m.GiverRole, &m.ApplicationID, &m.Context,
		tsScan{&m.IssueInstant}, tsScan{&m.NotBefore}, tsScan{&m.NotOnOrAfter}, tsScan{&m.CertNotAfter},
		&m.Raw, tsScan{&m.RegisteredAt}, &m.RegisteredBy, tsScan{&revAt}, nullString{&revBy}, nullString{&revReason})
	if err != nil {
		return nil, err
	}
	if !revAt.IsZero() {
		m.Revocation = &Revocation{At: revAt, By: revBy, Reason: revReason}
	}
	return &m, nil
}

func (s *sqlStore) mandateActors(ctx context.Context, q querier, id string) ([]string, error) {
	rows, err := q.query(ctx, "SELECT actor FROM mandate_actors WHERE mandate_id = $1 ORDER BY actor", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// uziOf returns the UZI number part of "<UZI>:<role>" (or the input).
func uziOf(actor string) string {
	if u, _, ok := strings.Cut(actor, ":"); ok && isDigits(u) {
		return u
	}
	return actor
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *sqlStore) FindMandate(ctx context.Context, mq MandateQuery) (*Mandate, error) {
	if mq.URA == "" || mq.GiverUZI == "" || mq.Context == "" {
		return nil, fmt.Errorf("%w: ura, giver and context required", ErrInvalid)
	}
	// One statement, so one snapshot on both backends (no read transaction
	// needed): the block check, the look-up and the mandated actors agree, and
	// nothing is cached, so a revocation or block committed by any replica is
	// seen by the next call.
	actorUZI := uziOf(mq.Actor)
	h, args := hotFindMandate, []any{mq.URA, mq.GiverUZI, mq.Context, mq.ApplicationID, s.d.ts(mq.At), actorUZI}
	if mq.Actor != "" {
		h, args = hotFindMandateActor, append(args, mq.Actor)
	}
	blocked, m, err := scanFoundMandate(s.b.hotRow(ctx, h, args...))
	switch {
	case err != nil:
		return nil, fmt.Errorf("store: find mandate: %w", err)
	case blocked:
		return nil, fmt.Errorf("%w (giver=%s actor=%s)", ErrActorBlocked, mq.GiverUZI, mq.Actor)
	case m == nil:
		return nil, fmt.Errorf("%w: no covering mandate (giver=%s context=%s)", ErrNotFound, mq.GiverUZI, mq.Context)
	}
	return m, nil
}

// hotStmt names a read statement the gateway runs for every proxied message;
// the backend prepares them once at Open (see prepareHot).
type hotStmt int

const (
	hotFindEnrolment    hotStmt = iota // $1 ura, $2 bsn, $3 at
	hotActorBlocked                    // $1 uzi
	hotFindMandate                     // $1 ura, $2 giver, $3 context, $4 application, $5 at, $6 actor's UZI
	hotFindMandateActor                // as hotFindMandate, plus $7 actor: only mandates naming $7 or $6
	numHotStmts
)

// hotSQL returns the text of the hot statements for dialect d. Both backends
// take $N placeholders (see db.go); only the aggregate that lists a mandate's
// actors differs.
//
// The mandate look-up is one statement, so it reads one snapshot without a
// transaction: a one-row source counting the blocked giver and actor, LEFT
// JOINed with the newest covering mandate (if any), plus that one mandate's
// actors as a JSON array (JSON, not a separator, because an actor may hold
// any character). A blocked giver or actor is therefore reported even when no
// mandate matches, as when the COUNT(*) ran first in a read transaction.
func hotSQL(d dialect) [numHotStmts]string {
	actors := `(SELECT json_group_array(a.actor ORDER BY a.actor) FROM mandate_actors a WHERE a.mandate_id = m.id)`
	if d == dialectPostgres {
		actors = `(SELECT json_agg(a.actor ORDER BY a.actor)::text FROM mandate_actors a WHERE a.mandate_id = m.id)`
	}
	findMandate := func(actorCond string) string {
		return `SELECT b.blocked, m.*, ` + actors + ` AS actors
			FROM (SELECT COUNT(*) AS blocked FROM blocked_actors WHERE uzi IN ($2, $6)) AS b
			LEFT JOIN (
				SELECT ` + mandateCols + `
				FROM mandates t
				WHERE t.ura = $1 AND t.giver_uzi = $2 AND t.context = $3 AND t.application_id = $4
				AND t.revoked_at IS NULL AND t.not_before <= $5 AND t.valid_until > $5` + actorCond + `
				ORDER BY t.issue_instant DESC, t.registered_at DESC LIMIT 1
			) AS m ON 1 = 1`
	}
	return [numHotStmts]string{
		hotFindEnrolment: `SELECT ` + enrolmentCols + ` FROM enrolments
			WHERE ura = $1 AND bsn = $2 AND revoked_at IS NULL AND not_before <= $3 AND not_on_or_after > $3
			ORDER BY issue_instant DESC, registered_at DESC LIMIT 1`,
		hotActorBlocked: `SELECT COUNT(*) FROM blocked_actors WHERE uzi = $1`,
		hotFindMandate:  findMandate(``),
		hotFindMandateActor: findMandate(`
				AND EXISTS (SELECT 1 FROM mandate_actors a WHERE a.mandate_id = t.id AND a.actor IN ($7, $6))`),
	}
}

// scanFoundMandate reads the row of hotFindMandate: the blocked count, then
// the mandate columns and its actors, all NULL when no mandate matched.
func scanFoundMandate(r scanner) (blocked bool, _ *Mandate, _ error) {
	var (
		n                        int64
		m                        Mandate
		found                    bool
		revAt                    time.Time
		revBy, revReason, actors string
	)
	err := r.Scan(&n, presentString{&m.ID, &found}, nullString{&m.Issuer}, nullString{&m.URA}, nullString{&m.GiverUZI},
		nullString{&m.GiverRole}, nullString{&m.ApplicationID}, nullString{&m.Context},
		tsScan{&m.IssueInstant}, tsScan{&m.NotBefore}, tsScan{&m.NotOnOrAfter}, tsScan{&m.CertNotAfter},
		&m.Raw, tsScan{&m.RegisteredAt}, nullString{&m.RegisteredBy}, tsScan{&revAt}, nullString{&revBy},
		nullString{&revReason}, nullString{&actors})
	if err != nil || !found {
		return n > 0, nil, err
	}
	if !revAt.IsZero() {
		m.Revocation = &Revocation{At: revAt, By: revBy, Reason: revReason}
	}
	if actors != "" {
		if err := json.Unmarshal([]byte(actors), &m.Mandated); err != nil {
			return n > 0, nil, fmt.Errorf("store: decode mandate actors (id=%s): %w", m.ID, err)
		}
		if len(m.Mandated) == 0 {
			m.Mandated = nil // as mandateActors: none is nil
		}
	}
	return n > 0, &m, nil
}

// presentString reads a nullable TEXT column and records whether it was NULL.
type presentString struct {
	s       *string
	present *bool
}

func (p presentString) Scan(src any) error {
	*p.present = src != nil
	return nullString{p.s}.Scan(src)
}

// readTx runs fn on the read side. On SQLite it is always one read
// transaction (one WAL snapshot). On PostgreSQL, snapshot asks for one
// REPEATABLE READ read-only transaction; without it each statement reads the
// latest commits (READ COMMITTED), which is what revocation checks need and
// saves two round trips.
func (s *sqlStore) readTx(ctx context.Context, snapshot bool, fn func(q querier) error) error {
	switch b := s.b.(type) {
	case *sqliteBackend:
		tx, err := b.reader.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: begin read: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		return fn(sqlQ{tx})
	case *pgBackend:
		if !snapshot {
			return fn(s.b.read())
		}
		tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return fmt.Errorf("store: begin read: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		return fn(pgQ{tx: tx})
	default:
		return fn(s.b.read())
	}
}

func (s *sqlStore) GetToken(ctx context.Context, id string) (*TokenInfo, error) {
	q := s.b.read()
	e, err := scanEnrolment(q.queryRow(ctx, `SELECT `+enrolmentCols+` FROM enrolments WHERE id = $1`, id))
	if err == nil {
		ti := enrolmentInfo(e)
		return &ti, nil
	}
	if !errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("store: get token: %w", err)
	}
	m, err := scanMandate(q.queryRow(ctx, `SELECT `+mandateCols+` FROM mandates WHERE id = $1`, id))
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%w: token (id=%s)", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get token: %w", err)
	}
	if m.Mandated, err = s.mandateActors(ctx, q, m.ID); err != nil {
		return nil, fmt.Errorf("store: read mandate actors: %w", err)
	}
	ti := mandateInfo(m)
	return &ti, nil
}

func enrolmentInfo(e *Enrolment) TokenInfo {
	return TokenInfo{Kind: KindEnrolment, ID: e.ID, URA: e.URA, BSN: e.BSN, NotBefore: e.NotBefore,
		ValidUntil: e.NotOnOrAfter, RegisteredAt: e.RegisteredAt, Revocation: e.Revocation}
}

func mandateInfo(m *Mandate) TokenInfo {
	return TokenInfo{Kind: KindMandate, ID: m.ID, URA: m.URA, GiverUZI: m.GiverUZI, Context: m.Context,
		Mandated: m.Mandated, NotBefore: m.NotBefore, ValidUntil: m.ValidUntil(), RegisteredAt: m.RegisteredAt,
		Revocation: m.Revocation}
}

func (s *sqlStore) ListTokens(ctx context.Context, f ListFilter) ([]TokenInfo, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	now := s.opts.Now()
	var out []TokenInfo
	q := s.b.read()
	if (f.Kind == "" || f.Kind == KindEnrolment) && f.GiverUZI == "" {
		var c conds
		if f.URA != "" {
			c.add("ura = $%d", f.URA)
		}
		if f.BSN != "" {
			c.add("bsn = $%d", f.BSN)
		}
		if !f.IncludeRevoked {
			c.raw("revoked_at IS NULL")
		}
		if !f.IncludeExpired {
			c.add("not_on_or_after > $%d", s.d.ts(now))
		}
		rows, err := q.query(ctx, `SELECT `+enrolmentCols+` FROM enrolments WHERE `+c.sql()+
			fmt.Sprintf(` ORDER BY registered_at DESC, id LIMIT $%d`, c.arg(f.Limit)), c.args...)
		if err != nil {
			return nil, fmt.Errorf("store: list enrolments: %w", err)
		}
		es, err := collect(rows, scanEnrolment)
		if err != nil {
			return nil, fmt.Errorf("store: list enrolments: %w", err)
		}
		for _, e := range es {
			out = append(out, enrolmentInfo(e))
		}
	}
	if (f.Kind == "" || f.Kind == KindMandate) && f.BSN == "" {
		var c conds
		if f.URA != "" {
			c.add("ura = $%d", f.URA)
		}
		if f.GiverUZI != "" {
			c.add("giver_uzi = $%d", f.GiverUZI)
		}
		if !f.IncludeRevoked {
			c.raw("revoked_at IS NULL")
		}
		if !f.IncludeExpired {
			c.add("valid_until > $%d", s.d.ts(now))
		}
		rows, err := q.query(ctx, `SELECT `+mandateCols+` FROM mandates WHERE `+c.sql()+
			fmt.Sprintf(` ORDER BY registered_at DESC, id LIMIT $%d`, c.arg(f.Limit)), c.args...)
		if err != nil {
			return nil, fmt.Errorf("store: list mandates: %w", err)
		}
		ms, err := collect(rows, scanMandate)
		if err != nil {
			return nil, fmt.Errorf("store: list mandates: %w", err)
		}
		for _, m := range ms {
			if m.Mandated, err = s.mandateActors(ctx, q, m.ID); err != nil {
				return nil, fmt.Errorf("store: read mandate actors: %w", err)
			}
			out = append(out, mandateInfo(m))
		}
	}
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *sqlStore) Revoke(ctx context.Context, id, reason, by string) error {
	if id == "" || reason == "" {
		return fmt.Errorf("%w: revoke needs an id and a reason", ErrInvalid)
	}
	now := s.d.ts(s.opts.Now())
	return s.b.tx(ctx, func(q querier) error {
		found := false
		for _, table := range []string{"enrolments", "mandates"} {
			var bsn string
			col := "''"
			if table == "enrolments" {
				col = "bsn"
			}
			err := q.queryRow(ctx, "SELECT "+col+" FROM "+table+" WHERE id = $1", id).Scan(&bsn)
			if errors.Is(err, errNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("store: revoke (id=%s): %w", id, err)
			}
			found = true
			n, err := q.exec(ctx, "UPDATE "+table+` SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
				WHERE id = $1 AND revoked_at IS NULL`, id, now, by, reason)
			if err != nil {
				return fmt.Errorf("store: revoke (id=%s): %w", id, err)
			}
			if n > 0 {
				if err := s.auditInTx(ctx, q, AuditRecord{Kind: AuditTokenRevoked, Actor: by, BSN: bsn,
					TokenIDs: []string{id}, Outcome: "ok", Details: detailsJSON(map[string]any{"reason": reason})}); err != nil {
					return err
				}
			}
		}
		if !found {
			return fmt.Errorf("%w: token (id=%s)", ErrNotFound, id)
		}
		return nil
	})
}

func (s *sqlStore) Expiring(ctx context.Context, within time.Duration) ([]TokenInfo, error) {
	if within < 0 {
		return nil, fmt.Errorf("%w: negative window", ErrInvalid)
	}
	now := s.opts.Now()
	// Unrevoked tokens still valid now: the set a hospital holds is small
	// (one enrolment per patient, some thousands of mandates), so filtering
	// the window in Go keeps one query path for both backends.
	all, err := s.ListTokens(ctx, ListFilter{Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	limit := now.Add(within)
	var out []TokenInfo
	for _, t := range all {
		if t.ValidUntil.After(now) && !t.ValidUntil.After(limit) {
			out = append(out, t)
		}
	}
	sortByValidUntil(out)
	return out, nil
}

func sortByValidUntil(ts []TokenInfo) {
	slices.SortStableFunc(ts, func(a, b TokenInfo) int { return a.ValidUntil.Compare(b.ValidUntil) })
}

func (s *sqlStore) RevokeMandatesOf(ctx context.Context, uzi, reason string) (int, error) {
	if uzi == "" || reason == "" {
		return 0, fmt.Errorf("%w: revoke mandates needs a uzi and a reason", ErrInvalid)
	}
	var n int64
	err := s.b.tx(ctx, func(q querier) error {
		var err error
		n, err = q.exec(ctx, `UPDATE mandates SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
			WHERE giver_uzi = $1 AND revoked_at IS NULL`, uzi, s.d.ts(s.opts.Now()), "iam", reason)
		if err != nil {
			return err
		}
		return s.auditInTx(ctx, q, AuditRecord{Kind: AuditMandatesRevoked, Giver: uzi, Actor: "iam", Outcome: "ok",
			Details: detailsJSON(map[string]any{"reason": reason, "count": n})})
	})
	if err != nil {
		return 0, fmt.Errorf("store: revoke mandates of giver: %w", err)
	}
	s.log.Info("mandates revoked", "giver", uzi, "count", n, "reason", reason)
	return int(n), nil
}

func (s *sqlStore) BlockActor(ctx context.Context, uzi, reason string) error {
	if uzi == "" || reason == "" {
		return fmt.Errorf("%w: block needs a uzi and a reason", ErrInvalid)
	}
	err := s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `INSERT INTO blocked_actors (uzi, reason, blocked_at) VALUES ($1, $2, $3)
			ON CONFLICT (uzi) DO NOTHING`, uzi, reason, s.d.ts(s.opts.Now()))
		if err != nil || n == 0 {
			return err
		}
		return s.auditInTx(ctx, q, AuditRecord{Kind: AuditActorBlocked, Actor: uzi, Outcome: "ok",
			Details: detailsJSON(map[string]any{"reason": reason})})
	})
	if err != nil {
		return fmt.Errorf("store: block actor: %w", err)
	}
	s.log.Info("actor blocked", "uzi", uzi, "reason", reason)
	return nil
}

func (s *sqlStore) UnblockActor(ctx context.Context, uzi, reason string) error {
	if uzi == "" {
		return fmt.Errorf("%w: unblock needs a uzi", ErrInvalid)
	}
	err := s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `DELETE FROM blocked_actors WHERE uzi = $1`, uzi)
		if err != nil || n == 0 {
			return err
		}
		return s.auditInTx(ctx, q, AuditRecord{Kind: AuditActorUnblocked, Actor: uzi, Outcome: "ok",
			Details: detailsJSON(map[string]any{"reason": reason})})
	})
	if err != nil {
		return fmt.Errorf("store: unblock actor: %w", err)
	}
	s.log.Info("actor unblocked", "uzi", uzi, "reason", reason)
	return nil
}

func (s *sqlStore) ActorBlocked(ctx context.Context, uzi string) (bool, error) {
	var n int
	if err := s.b.hotRow(ctx, hotActorBlocked, uzi).Scan(&n); err != nil {
		return false, fmt.Errorf("store: actor blocked: %w", err)
	}
	return n > 0, nil
}

// detailsJSON encodes store-generated audit details (never fails for the
// plain maps used here).
func detailsJSON(v map[string]any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}
