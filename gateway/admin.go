package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/tokens"
)

// The admin API (bearer-protected, on the admin listener):
//
//	POST /v1/admin/tokens?type=enrolment|mandate   body: the signed assertion (XML)
//	GET  /v1/admin/tokens[?kind=&ura=&bsn=&giver=&revoked=1&expired=1]
//	GET  /v1/admin/tokens/{id}
//	POST /v1/admin/tokens/{id}/revoke              body: {"reason": "...", "by": "..."}
//	GET  /v1/admin/expiring?days=N
//	POST /v1/admin/actors/{uzi}/block|unblock      body: {"reason": "..."}
//	POST /v1/admin/actors/{uzi}/revoke-mandates    body: {"reason": "..."}
//	GET  /v1/admin/audit/verify
//	GET  /v1/admin/jobs/{id}
func (s *Server) registerAdmin(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/admin/tokens", s.adminRegister)
	mux.HandleFunc("GET /v1/admin/tokens", s.adminList)
	mux.HandleFunc("GET /v1/admin/tokens/{id}", s.adminGet)
	mux.HandleFunc("POST /v1/admin/tokens/{id}/revoke", s.adminRevoke)
	mux.HandleFunc("GET /v1/admin/expiring", s.adminExpiring)
	mux.HandleFunc("POST /v1/admin/actors/{uzi}/{action}", s.adminActor)
	mux.HandleFunc("GET /v1/admin/audit/verify", s.adminVerify)
}

// ErrRegister is wrapped by every refused registration.
var ErrRegister = errors.New("gateway: token refused")

// TokenView is what the admin API shows of a token (never its body).
type TokenView struct {
	Kind         string    `json:"kind"`
	ID           string    `json:"id"`
	URA          string    `json:"ura"`
	BSN          string    `json:"bsn,omitempty"`
	GiverUZI     string    `json:"giver_uzi,omitempty"`
	Context      string    `json:"context,omitempty"`
	Mandated     []string  `json:"mandated,omitempty"`
	NotBefore    time.Time `json:"not_before"`
	ValidUntil   time.Time `json:"valid_until"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	Revoked      bool      `json:"revoked"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

func viewOf(t store.TokenInfo) TokenView {
	v := TokenView{Kind: string(t.Kind), ID: t.ID, URA: t.URA, BSN: t.BSN, GiverUZI: t.GiverUZI,
		Context: t.Context, Mandated: t.Mandated, NotBefore: t.NotBefore, ValidUntil: t.ValidUntil,
		RegisteredAt: t.RegisteredAt}
	if t.Revocation != nil {
		v.Revoked, v.RevokedAt, v.RevokeReason = true, t.Revocation.At, t.Revocation.Reason
	}
	return v
}

// Register validates a signed enrolment or mandate token with the
// configured UZI trust (chain, CRLs, lifetimes, key purpose) and stores its
// bytes. Registering the same token twice is a no-op. It is what the admin
// API calls; `aortagw admin register` uses a Registrar.
func (s *Server) Register(ctx context.Context, raw []byte, want tokens.Type, by string) (TokenView, error) {
	return (&Registrar{cfg: s.cfg, verifier: s.deps.Verifier, store: s.deps.Store, log: s.log}).Register(ctx, raw, want, by)
}

// Registrar validates and stores enrolment and mandate tokens without a
// running gateway (for `aortagw admin register`). Safe for concurrent use.
type Registrar struct {
	cfg      Config
	verifier TokenVerifier
	store    store.Store
	log      *slog.Logger
}

// NewRegistrar returns a Registrar over the trust, URA and application id
// of cfg. Build the verifier with NewTokenValidator(cfg).
func NewRegistrar(cfg Config, v TokenVerifier, st store.Store, log *slog.Logger) *Registrar {
	if log == nil {
		log = slog.Default()
	}
	return &Registrar{cfg: cfg, verifier: v, store: st, log: log}
}

func (s *Registrar) appURN() string { return tokens.AppIDPrefix + s.cfg.Tokens.ApplicationID }

// Register validates one token and stores it (see Server.Register).
func (s *Registrar) Register(ctx context.Context, raw []byte, want tokens.Type, by string) (TokenView, error) {
	if want != tokens.TypeEnrolment && want != tokens.TypeMandate {
		return TokenView{}, fmt.Errorf("%w: only enrolment and mandate tokens are registered (type=%s)", ErrRegister, want)
	}
	v, err := s.verifier.Verify(ctx, raw, want)
	if err != nil {
		return TokenView{}, fmt.Errorf("%w: %w", ErrRegister, err)
	}
	if v.SignerCert == nil {
		return TokenView{}, fmt.Errorf("%w: no signer certificate", ErrRegister)
	}
	var view TokenView
	switch want {
	case tokens.TypeEnrolment:
		e := v.Enrolment
		if e == nil {
			return TokenView{}, fmt.Errorf("%w: not an enrolment token", ErrRegister)
		}
		if s.cfg.Tokens.URA != "" && e.URA != s.cfg.Tokens.URA {
			return TokenView{}, fmt.Errorf("%w: enrolment is for another care provider (ura=%s)", ErrRegister, e.URA)
		}
		signer := ""
		if v.Signer != nil {
			signer = v.Signer.UZI
		}
		rec := store.Enrolment{ID: v.ID, Issuer: v.Issuer, URA: e.URA, BSN: e.BSN, SignerUZI: signer,
			IssueInstant: e.IssueInstant, NotBefore: e.NotBefore, NotOnOrAfter: e.NotOnOrAfter,
			CertNotAfter: v.SignerCert.NotAfter, Raw: append([]byte(nil), raw...), RegisteredBy: by}
		if err := s.store.RegisterEnrolment(ctx, rec); err != nil {
			return TokenView{}, err
		}
		view = TokenView{Kind: string(store.KindEnrolment), ID: rec.ID, URA: rec.URA, BSN: rec.BSN,
			NotBefore: rec.NotBefore, ValidUntil: rec.NotOnOrAfter}
	case tokens.TypeMandate:
		m := v.Mandate
		if m == nil {
			return TokenView{}, fmt.Errorf("%w: not a mandate token", ErrRegister)
		}
		if s.cfg.Tokens.URA != "" && m.URA != s.cfg.Tokens.URA {
			return TokenView{}, fmt.Errorf("%w: mandate is for another care provider (ura=%s)", ErrRegister, m.URA)
		}
		if m.ApplicationID != "" && m.ApplicationID != s.appURN() {
			return TokenView{}, fmt.Errorf("%w: mandate is for another application (application=%s)", ErrRegister, m.ApplicationID)
		}
		rec := store.Mandate{ID: v.ID, Issuer: v.Issuer, URA: m.URA, GiverUZI: m.GiverUZI, GiverRole: m.GiverRole,
			Mandated: m.Mandated, ApplicationID: s.appURN(), Context: m.Context,
			IssueInstant: m.IssueInstant, NotBefore: m.NotBefore, NotOnOrAfter: m.NotOnOrAfter,
			CertNotAfter: v.SignerCert.NotAfter, Raw: append([]byte(nil), raw...), RegisteredBy: by}
		if err := s.store.RegisterMandate(ctx, rec); err != nil {
			return TokenView{}, err
		}
		view = TokenView{Kind: string(store.KindMandate), ID: rec.ID, URA: rec.URA, GiverUZI: rec.GiverUZI,
			Context: rec.Context, Mandated: rec.Mandated, NotBefore: rec.NotBefore, ValidUntil: rec.ValidUntil()}
	}
	s.log.Info("token registered", "kind", view.Kind, "id", view.ID, "ura", view.URA, "by", by)
	return view, nil
}

func (s *Server) adminRegister(w http.ResponseWriter, r *http.Request) {
	want, err := tokens.ParseType(r.URL.Query().Get("type"))
	if err != nil {
		adminError(w, http.StatusBadRequest, "type must be enrolment or mandate")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		adminError(w, http.StatusRequestEntityTooLarge, "could not read the token: "+err.Error())
		return
	}
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "admin-api"
	}
	v, err := s.Register(r.Context(), raw, want, by)
	switch {
	case errors.Is(err, ErrRegister), errors.Is(err, store.ErrInvalid):
		adminError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, store.ErrDuplicate):
		adminError(w, http.StatusConflict, err.Error())
	case err != nil:
		s.log.Error("register token", "err", err)
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
	default:
		writeJSON(w, http.StatusCreated, v)
	}
}

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.ListFilter{Kind: store.TokenKind(q.Get("kind")), URA: q.Get("ura"), BSN: q.Get("bsn"),
		GiverUZI: q.Get("giver"), IncludeRevoked: q.Get("revoked") == "1", IncludeExpired: q.Get("expired") == "1"}
	list, err := s.deps.Store.ListTokens(r.Context(), f)
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
		return
	}
	writeTokenViews(w, list)
}

// writeTokenViews answers with the views of list (never the token bodies).
func writeTokenViews(w http.ResponseWriter, list []store.TokenInfo) {
	out := make([]TokenView, 0, len(list))
	for _, t := range list {
		out = append(out, viewOf(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminGet(w http.ResponseWriter, r *http.Request) {
	t, err := s.deps.Store.GetToken(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		adminError(w, http.StatusNotFound, "no such token")
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
	default:
		writeJSON(w, http.StatusOK, viewOf(*t))
	}
}

type reasonBody struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
}

func readReason(r *http.Request) (reasonBody, error) {
	var b reasonBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil && !errors.Is(err, io.EOF) {
		return b, err
	}
	if b.Reason == "" {
		return b, errors.New("a reason is required")
	}
	if b.By == "" {
		b.By = "admin-api"
	}
	return b, nil
}

func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	b, err := readReason(r)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("id")
	switch err := s.deps.Store.Revoke(r.Context(), id, b.Reason, b.By); {
	case errors.Is(err, store.ErrNotFound):
		adminError(w, http.StatusNotFound, "no such token")
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
	default:
		s.log.Info("token revoked", "id", id, "by", b.By)
		writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
	}
}

func (s *Server) adminExpiring(w http.ResponseWriter, r *http.Request) {
	days, err := strconv.Atoi(r.URL.Query().Get("days"))
	if err != nil || days < 0 || days > 3650 {
		adminError(w, http.StatusBadRequest, "days must be a number of days in [0, 3650]")
		return
	}
	list, err := s.deps.Store.Expiring(r.Context(), time.Duration(days)*24*time.Hour)
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
		return
	}
	writeTokenViews(w, list)
}

func (s *Server) adminActor(w http.ResponseWriter, r *http.Request) {
	uzi := r.PathValue("uzi")
	if !digits(uzi, 9) {
		adminError(w, http.StatusBadRequest, "uzi must be a 9-digit UZI number")
		return
	}
	b, err := readReason(r)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	res := map[string]any{"uzi": uzi}
	switch r.PathValue("action") {
	case "block":
		err = s.deps.Store.BlockActor(ctx, uzi, b.Reason)
		res["blocked"] = true
	case "unblock":
		err = s.deps.Store.UnblockActor(ctx, uzi, b.Reason)
		res["blocked"] = false
	case "revoke-mandates":
		var n int
		n, err = s.deps.Store.RevokeMandatesOf(ctx, uzi, b.Reason)
		res["revoked"] = n
	default:
		adminError(w, http.StatusNotFound, "action must be block, unblock or revoke-mandates")
		return
	}
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) adminVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := s.deps.Store.VerifyChain(r.Context())
	if err != nil && !errors.Is(err, store.ErrChainBroken) {
		adminError(w, http.StatusServiceUnavailable, "the store is unavailable")
		return
	}
	status := http.StatusOK
	if !rep.OK {
		status = http.StatusConflict
	}
	writeJSON(w, status, rep)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// RegisterFiles is what `aortagw admin register KIND FILE...` runs: it builds
// the validator from cfg's trust settings, opens the store named by
// cfg.Store.DSN and registers each file (the signed assertion, byte for
// byte), writing one line per token to out. Every file is validated before
// any is stored, so one bad file changes nothing.
func RegisterFiles(ctx context.Context, cfg Config, kind string, files []string, by string, out io.Writer) error {
	want, err := tokens.ParseType(kind)
	if err != nil {
		return err
	}
	v, err := NewTokenValidator(cfg)
	if err != nil {
		return err
	}
	raws := make([][]byte, len(files))
	for i, f := range files {
		if raws[i], err = os.ReadFile(f); err != nil {
			return fmt.Errorf("%w: read token (path=%s): %v", ErrRegister, f, err)
		}
		if _, err := v.Verify(ctx, raws[i], want); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRegister, f, err)
		}
	}
	st, err := store.Open(ctx, cfg.Store.DSN, store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer st.Close()
	r := NewRegistrar(cfg, v, st, slog.New(slog.DiscardHandler))
	for i, raw := range raws {
		tv, err := r.Register(ctx, raw, want, by)
		if err != nil {
			return fmt.Errorf("%s: %w", files[i], err)
		}
		fmt.Fprintf(out, "registered %s %s (ura %s, valid until %s)\n", tv.Kind, tv.ID, tv.URA, tv.ValidUntil.UTC().Format(time.RFC3339))
	}
	return nil
}
