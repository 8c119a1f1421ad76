package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/testpki"
)

// These tests run the signer and the validator against the project's shared
// UZI-shaped test PKI (package testpki) and its edge cases.

func testpkiValidator(t *testing.T, p *testpki.PKI, now time.Time, mod ...func(*ValidatorConfig)) *Validator {
	t.Helper()
	cfg := ValidatorConfig{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
		RequireCRLForCAs: true, Now: fixedClock(now)}
	for _, m := range mod {
		m(&cfg)
	}
	v, err := NewValidator(cfg)
	require.NoError(t, err)
	return v
}

func testpkiSigner(t *testing.T, c *testpki.Cert, now time.Time) *Signer {
	t.Helper()
	require.NotNil(t, c.Key, "software key expected")
	s, err := NewSigner(c.Key, c.Chain, WithClock(fixedClock(now)), WithEmbeddedCertificate(true))
	require.NoError(t, err)
	return s
}

func TestWithTestPKI(t *testing.T) {
	p := testpki.Default(t)
	now := p.Now
	var z *testpki.Card
	for _, c := range p.CardsOf(uzi.CardZ) {
		z = c
		break
	}
	require.NotNil(t, z)
	ura := p.Server.Chain[0]
	srvID, err := uzi.Parse(ura)
	require.NoError(t, err)

	enr, err := testpkiSigner(t, z.Auth, now).SignEnrolment(Enrolment{URA: z.URA, BSN: "999911120"})
	require.NoError(t, err)
	mdt, err := testpkiSigner(t, z.Sign, now).SignMandate(Mandate{URA: srvID.URA, Context: "https://x.example/regel",
		Mandated: []string{AppIDPrefix + "1234"}, NotOnOrAfter: now.Add(30 * 24 * time.Hour)})
	require.NoError(t, err)
	trx, err := testpkiSigner(t, p.Server, now).SignTransaction(Transaction{URA: srvID.URA, BSN: "999911120",
		InteractionID: "GQZG_IN000001NL", MessageIDRoot: "2.16.528.1.1007.3.3." + srvID.URA + ".1", MessageIDExt: "1",
		ApplicationID: AppIDPrefix + "1234", Context: "https://x.example/regel"})
	require.NoError(t, err)

	v := testpkiValidator(t, p, now.Add(time.Second))
	for _, c := range []struct {
		s   *Signed
		typ Type
	}{{enr, TypeEnrolment}, {mdt, TypeMandate}, {trx, TypeTransaction}} {
		_, err := v.Verify(context.Background(), c.s.Bytes(), c.typ)
		assert.NoError(t, err, "%s", c.typ)
	}

	edgeTrx := func(c *testpki.Cert) []byte {
		name, err := RenderIssuerName(c.Cert.RawIssuer)
		require.NoError(t, err)
		s := &Signer{key: c.Key, leaf: c.Cert, issuerName: name, serial: c.Cert.SerialNumber.String(), embedCert: true}
		id, _ := uzi.Parse(c.Cert)
		tr := Transaction{ID: "trx_edge", IssueInstant: now, NotBefore: now.Add(-time.Minute), NotOnOrAfter: now.Add(5 * time.Minute),
			URA: z.URA, NameID: z.NameID(), InteractionID: "I", MessageIDRoot: "R", MessageIDExt: "E", Audiences: []string{AudienceZIM}}
		if id != nil {
			tr.URA, tr.NameID = id.URA, id.NameID()
		}
		out, err := s.sign(context.Background(), buildTransaction(&tr, name, s.serial), TypeTransaction, tr.ID, "x", tr.NotOnOrAfter)
		require.NoError(t, err)
		return out.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
		mod  func(*ValidatorConfig)
		want error
	}{
		{"expired", edgeTrx(p.Edge.Expired), nil, ErrUntrusted},
		{"not yet valid", edgeTrx(p.Edge.NotYetValid), nil, ErrUntrusted},
		{"revoked", edgeTrx(p.Edge.Revoked), nil, ErrRevoked},
		{"revoked after signing is still revoked for a transaction", edgeTrx(p.Edge.RevokedAfterSigning), nil, ErrRevoked},
		{"wrong key usage", edgeTrx(p.Edge.WrongUsageAuth), nil, ErrNotUZI},
		{"attacker chain", edgeTrx(p.Edge.AttackerCard), nil, ErrUntrusted},
		{"stale crl", trx.Bytes(), func(c *ValidatorConfig) {
			c.CRLs = append(c.CRLs[:0:0], c.CRLs...)
			for i, l := range c.CRLs {
				if string(l.RawIssuer) == string(p.Edge.StaleCRL.RawIssuer) {
					c.CRLs[i] = p.Edge.StaleCRL
				}
			}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mods := []func(*ValidatorConfig){}
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			_, err := testpkiValidator(t, p, now.Add(time.Second), mods...).Verify(context.Background(), tc.in, TypeTransaction)
			if tc.want == nil {
				// The stale CRL belongs to the Zorgverlener CA; a server-signed token does not use it.
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.want, "got %v", err)
		})
	}
	t.Run("stale crl rejects a card-signed token", func(t *testing.T) {
		crls := p.CRLList()
		for i, l := range crls {
			if string(l.RawIssuer) == string(p.Edge.StaleCRL.RawIssuer) {
				crls[i] = p.Edge.StaleCRL
			}
		}
		v := testpkiValidator(t, p, now.Add(time.Second), func(c *ValidatorConfig) { c.CRLs = crls })
		_, err := v.Verify(context.Background(), enr.Bytes(), TypeEnrolment)
		assert.ErrorIs(t, err, ErrCRLStale)
	})
	t.Run("enrolment revoked after signing is accepted", func(t *testing.T) {
		s := testpkiSigner(t, p.Edge.RevokedAfterSigning, p.Edge.SigningMoment)
		e, err := s.SignEnrolment(Enrolment{URA: z.URA, BSN: "999911120"})
		require.NoError(t, err)
		_, err = testpkiValidator(t, p, now.Add(time.Second)).Verify(context.Background(), e.Bytes(), TypeEnrolment)
		assert.NoError(t, err)
	})
	t.Run("enrolment revoked before signing is rejected", func(t *testing.T) {
		s := testpkiSigner(t, p.Edge.Revoked, p.Edge.RevokedAt.Add(time.Minute))
		e, err := s.SignEnrolment(Enrolment{URA: z.URA, BSN: "999911120"})
		require.NoError(t, err)
		_, err = testpkiValidator(t, p, now.Add(time.Second)).Verify(context.Background(), e.Bytes(), TypeEnrolment)
		assert.ErrorIs(t, err, ErrRevoked)
	})
}
