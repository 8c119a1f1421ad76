package lsp

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/tokens"
)

// fakeVerifier accepts every bundle whose transaction token is present and
// echoes the binding's URA; it lets the handler's own parsing be fuzzed and
// unit-tested without a PKI. It is never used to test token rules.
type fakeVerifier struct{ err error }

func (f fakeVerifier) VerifyBundle(_ context.Context, b tokens.Bundle, m tokens.Binding) (*tokens.BundleResult, error) {
	if f.err != nil {
		return nil, f.err
	}
	if b.Transaction == nil {
		return nil, tokens.ErrMissingToken
	}
	return &tokens.BundleResult{Transaction: &tokens.Verified{ID: "trx_1", Transaction: &tokens.Transaction{URA: m.URA}}}, nil
}

func plainSim(t testing.TB, v TokenVerifier, maxRecords int) *Simulator {
	s, err := NewSimulator(SimConfig{Verifier: v, AllowUntrustedPeer: true, MaxRecords: maxRecords,
		Dataset: NewDataset(1, 2, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))})
	require.NoError(t, err)
	return s
}

func post(s *Simulator, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/zim", bytes.NewReader(body))
	r.Header.Set("Content-Type", soap.ContentType)
	r.Header.Set("SOAPAction", `"x"`)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func fakeEnvelope(t testing.TB, ext string) []byte {
	body, err := hl7.BuildQuery(hl7.QueryParams{Interaction: hl7.QURXQuery, MessageID: hl7.ID{Root: "1.2.3", Ext: ext},
		Created: time.Now(), SenderApp: testApp, Author: hl7.Person{UZI: "123456782", Role: "01.015", URA: "90000382"},
		BSN: WellKnownBSNs[0]})
	require.NoError(t, err)
	tok := []byte(`<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="trx_1"><saml:Subject><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"/></saml:Subject></saml:Assertion>`)
	return soap.Build(body, tok)
}

func TestSimulatorRecordsBounded(t *testing.T) {
	s := plainSim(t, fakeVerifier{}, 2)
	for _, ext := range []string{"a", "b", "c"} {
		w := post(s, fakeEnvelope(t, ext))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	}
	recs := s.Accepted()
	require.Len(t, recs, 2)
	assert.Equal(t, "1.2.3^b", recs[0].MessageID)
	assert.Equal(t, "1.2.3^c", recs[1].MessageID)

	// A refusal by the verifier is answered with its specific fault and not recorded.
	s2 := plainSim(t, fakeVerifier{err: errors.Join(tokens.ErrRevoked)}, 0)
	w := post(s2, fakeEnvelope(t, "d"))
	f, ok := soap.ParseFault(w.Body.Bytes())
	require.True(t, ok)
	assert.Equal(t, "zim:TokenRevoked", f.Code)
	assert.Empty(t, s2.Accepted())
	assert.Equal(t, map[string]int{"zim:TokenRevoked": 1}, s2.Faults())

	w = httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/zim", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	r := httptest.NewRequest(http.MethodPost, "/zim", bytes.NewReader(fakeEnvelope(t, "e")))
	r.Header.Set("Content-Type", "application/soap+xml")
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	f, ok = soap.ParseFault(w.Body.Bytes())
	require.True(t, ok)
	assert.Equal(t, FaultContentType, f.Code)
}

// FuzzSimulator feeds arbitrary requests to the simulator's parsers: every
// answer must be a SOAP 1.1 envelope (an HL7 answer or a fault).
func FuzzSimulator(f *testing.F) {
	f.Add(fakeEnvelope(f, "a"))
	f.Add(soap.Build([]byte(`<x xmlns="urn:hl7-org:v3"/>`)))
	f.Add([]byte("<not-xml"))
	s := plainSim(f, fakeVerifier{}, 10)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := post(s, body)
		e, err := soap.ParseEnvelope(w.Body.Bytes(), soap.Limits{})
		if err != nil {
			t.Fatalf("answer is not a soap envelope: %v\n%s", err, w.Body.Bytes())
		}
		if (w.Code == http.StatusOK) == e.IsFault() {
			t.Fatalf("status %d with fault=%v", w.Code, e.IsFault())
		}
	})
}
