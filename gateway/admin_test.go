package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/gateway/store"
)

func TestAdminTokenLifecycle(t *testing.T) {
	e := newEnv(t)
	enr := e.signEnrolment(e.actor, e.bsn)
	mdt := e.signMandate(e.giver, []string{e.actor.UZI}, MedicationContext, 20*24*time.Hour)

	st, b := e.adminDo(http.MethodPost, "/v1/admin/tokens?type=inschrijf", enr)
	require.Equal(t, http.StatusCreated, st, string(b))
	var ev TokenView
	require.NoError(t, json.Unmarshal(b, &ev))
	assert.Equal(t, "enrolment", ev.Kind)
	assert.Equal(t, e.bsn, ev.BSN)
	assert.NotContains(t, string(b), "Assertion", "no token body in the answer")

	st, b = e.adminDo(http.MethodPost, "/v1/admin/tokens?type=mandate", mdt)
	require.Equal(t, http.StatusCreated, st, string(b))
	var mv TokenView
	require.NoError(t, json.Unmarshal(b, &mv))
	assert.Equal(t, e.giver.UZI, mv.GiverUZI)
	assert.Equal(t, []string{e.actor.UZI}, mv.Mandated)

	// Registering the same token again is a no-op.
	st, _ = e.adminDo(http.MethodPost, "/v1/admin/tokens?type=mandate", mdt)
	assert.Equal(t, http.StatusCreated, st)

	refused := []struct {
		name, typ string
		body      []byte
	}{
		{name: "tampered", typ: "enrolment", body: bytes.Replace(enr, []byte(e.bsn), []byte("999990032"), 1)},
		{name: "wrong type", typ: "mandate", body: enr},
		{name: "enrolment signed with the non-repudiation key", typ: "enrolment", body: func() []byte {
			s := e.signMandate(e.giver, []string{e.actor.UZI}, MedicationContext, time.Hour)
			return s
		}()},
		{name: "not xml", typ: "enrolment", body: []byte("nope")},
		{name: "transaction tokens are not registered", typ: "transaction", body: enr},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			st, b := e.adminDo(http.MethodPost, "/v1/admin/tokens?type="+r.typ, r.body)
			assert.Equal(t, http.StatusUnprocessableEntity, st, string(b))
		})
	}
	st, _ = e.adminDo(http.MethodPost, "/v1/admin/tokens?type=bogus", enr)
	assert.Equal(t, http.StatusBadRequest, st)

	st, b = e.adminDo(http.MethodGet, "/v1/admin/tokens", nil)
	require.Equal(t, http.StatusOK, st)
	var list []TokenView
	require.NoError(t, json.Unmarshal(b, &list))
	assert.Len(t, list, 2)

	st, b = e.adminDo(http.MethodGet, "/v1/admin/expiring?days=30", nil)
	require.Equal(t, http.StatusOK, st, string(b))
	require.NoError(t, json.Unmarshal(b, &list))
	require.Len(t, list, 1, "only the 20-day mandate expires within 30 days")
	assert.Equal(t, mv.ID, list[0].ID)
	st, _ = e.adminDo(http.MethodGet, "/v1/admin/expiring?days=x", nil)
	assert.Equal(t, http.StatusBadRequest, st)

	st, _ = e.adminDo(http.MethodPost, "/v1/admin/tokens/"+mv.ID+"/revoke", []byte(`{}`))
	assert.Equal(t, http.StatusBadRequest, st, "a reason is required")
	st, b = e.adminDo(http.MethodPost, "/v1/admin/tokens/"+mv.ID+"/revoke", []byte(`{"reason":"card lost","by":"security officer"}`))
	require.Equal(t, http.StatusOK, st, string(b))
	st, b = e.adminDo(http.MethodGet, "/v1/admin/tokens/"+mv.ID, nil)
	require.Equal(t, http.StatusOK, st)
	require.NoError(t, json.Unmarshal(b, &mv))
	assert.True(t, mv.Revoked)
	assert.Equal(t, "card lost", mv.RevokeReason)
	st, _ = e.adminDo(http.MethodGet, "/v1/admin/tokens/nope", nil)
	assert.Equal(t, http.StatusNotFound, st)

	st, b = e.adminDo(http.MethodPost, "/v1/admin/actors/"+e.actor.UZI+"/block", []byte(`{"reason":"left"}`))
	require.Equal(t, http.StatusOK, st, string(b))
	blocked, err := e.st.ActorBlocked(t.Context(), e.actor.UZI)
	require.NoError(t, err)
	assert.True(t, blocked)
	st, _ = e.adminDo(http.MethodPost, "/v1/admin/actors/123/block", []byte(`{"reason":"x"}`))
	assert.Equal(t, http.StatusBadRequest, st)

	st, b = e.adminDo(http.MethodGet, "/v1/admin/audit/verify", nil)
	require.Equal(t, http.StatusOK, st, string(b))
	var rep store.Report
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.True(t, rep.OK)
	assert.Positive(t, rep.Records)
}

func TestRegisterFiles(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cfg := e.cfg
	cfg.Trust.UZIRootsFile = filepath.Join(dir, "roots.pem")
	cfg.Trust.IntermediatesFile = filepath.Join(dir, "inter.pem")
	require.NoError(t, writePEM(cfg.Trust.UZIRootsFile, e.pki.RootCerts()))
	require.NoError(t, writePEM(cfg.Trust.IntermediatesFile, e.pki.IntermediateCerts()))
	for name, crl := range e.pki.CRLs {
		f := filepath.Join(dir, name+".crl")
		require.NoError(t, os.WriteFile(f, crl.Raw, 0o600))
		cfg.Trust.CRLFiles = append(cfg.Trust.CRLFiles, f)
	}
	cfg.Store.DSN = "sqlite:" + filepath.Join(dir, "cli.db")
	good := filepath.Join(dir, "enrolment.xml")
	require.NoError(t, os.WriteFile(good, e.signEnrolment(e.actor, e.bsn), 0o600))
	bad := filepath.Join(dir, "bad.xml")
	require.NoError(t, os.WriteFile(bad, bytes.Replace(e.signEnrolment(e.actor, e.bsn), []byte(e.bsn), []byte("999990032"), 1), 0o600))

	var out bytes.Buffer
	noCRL := cfg
	noCRL.Trust.CRLFiles = nil
	require.ErrorIs(t, RegisterFiles(t.Context(), noCRL, "enrolment", []string{good}, "cli-test", &out), ErrRegister,
		"without CRLs nothing is accepted (fail closed)")
	err := RegisterFiles(t.Context(), cfg, "inschrijf", []string{good, bad}, "cli-test", &out)
	require.ErrorIs(t, err, ErrRegister)
	assert.Empty(t, out.String(), "one bad file: nothing stored")

	require.NoError(t, RegisterFiles(t.Context(), cfg, "enrolment", []string{good}, "cli-test", &out))
	assert.Contains(t, out.String(), "registered enrolment ins_")
}
