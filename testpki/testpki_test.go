package testpki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/internal/uzi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sharedPKI(t *testing.T) *PKI {
	t.Helper()
	return Default(t)
}

func verify(p *PKI, c *x509.Certificate, at time.Time, roots *x509.CertPool) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: p.Intermediates(), CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func TestCardsParse(t *testing.T) {
	p := sharedPKI(t)
	require.Len(t, p.Cards, 6)
	assert.Len(t, p.CardsOf(uzi.CardZ), 3)
	assert.Len(t, p.CardsOf(uzi.CardN), 2)
	assert.Len(t, p.CardsOf(uzi.CardM), 1)
	for _, card := range p.Cards {
		t.Run(card.Name, func(t *testing.T) {
			want := map[uzi.KeyPurpose]*Cert{uzi.PurposeAuthentication: card.Auth, uzi.PurposeEncryption: card.Enc}
			if card.Type != uzi.CardM {
				want[uzi.PurposeNonRepudiation] = card.Sign
			} else {
				assert.Nil(t, card.Sign)
			}
			for purpose, c := range want {
				require.NotNil(t, c, purpose.String())
				id, err := uzi.ParseWithOptions(c.Cert, uzi.ParseOptions{})
				require.NoError(t, err, c.Name)
				assert.Equal(t, card.Type, id.CardType, c.Name)
				assert.Equal(t, purpose, id.Purpose, c.Name)
				assert.Equal(t, card.UZI, id.UZI)
				assert.Equal(t, card.URA, id.URA)
				assert.Equal(t, card.Role, id.Role)
				assert.Equal(t, card.AGB, id.AGB)
				assert.True(t, id.Test)
				assert.Equal(t, card.NameID(), id.NameID())
				assert.Equal(t, purpose.KeyUsage(), c.Cert.KeyUsage)
				require.NoError(t, verify(p, c.Cert, p.Now, p.Roots()), c.Name)
				assert.Len(t, c.Chain, 4, "leaf, UZI CA, Organisatie Persoon CA, root")
				assert.Equal(t, p.Root.Cert.Raw, c.Chain[len(c.Chain)-1].Raw)
				_, err = uzi.ParseWithOptions(c.Cert, uzi.ParseOptions{ProductionOnly: true})
				assert.ErrorIs(t, err, uzi.ErrTestCA, "a production configuration refuses test certificates")
				assertKeyMatches(t, c)
			}
		})
	}
	z := p.CardsOf(uzi.CardZ)[0]
	assert.Equal(t, "01.015", z.Role)
	assert.NotEqual(t, "00000000", z.AGB)
	assert.Equal(t, p.Org("A").URA, z.URA)
	assert.Equal(t, p.Org("B").URA, p.CardsOf(uzi.CardZ)[2].URA)
	assert.NotEqual(t, p.Org("A").URA, p.Org("B").URA)
}

func assertKeyMatches(t *testing.T, c *Cert) {
	t.Helper()
	if c.Key == nil {
		return
	}
	digest := sha256.Sum256([]byte(c.Name))
	sig, err := c.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	require.NoError(t, err)
	assert.NoError(t, c.Cert.CheckSignature(x509.SHA256WithRSA, []byte(c.Name), sig), "key belongs to %s", c.Name)
}

func TestProfileDetails(t *testing.T) {
	p := sharedPKI(t)
	card := p.CardsOf(uzi.CardZ)[0]
	hasExt := func(c *x509.Certificate, oid string) (bool, bool) {
		for _, e := range c.Extensions {
			if e.Id.String() == oid {
				return true, e.Critical
			}
		}
		return false, false
	}
	found, critical := hasExt(card.Auth.Cert, "2.5.29.15")
	assert.True(t, found && critical, "keyUsage is critical")
	found, _ = hasExt(card.Sign.Cert, uzi.OIDQCStatements)
	assert.True(t, found, "HND carries qcStatements")
	found, _ = hasExt(card.Auth.Cert, uzi.OIDQCStatements)
	assert.False(t, found)
	assert.Equal(t, card.UZI, card.Auth.Cert.Subject.SerialNumber)
	assert.Contains(t, card.Auth.Cert.Issuer.CommonName, "TEST UZI-register Zorgverlener CA G3")
	assert.Equal(t, []string{"CIBG"}, card.Auth.Cert.Issuer.Organization)
	assert.Contains(t, card.Auth.Cert.Issuer.String(), "2.5.4.97=#130e4e54524e4c2d3530303030353335", "organizationIdentifier NTRNL-50000535 as PrintableString")
	assert.Contains(t, p.Root.Cert.Subject.CommonName, "TEST")
	assert.Equal(t, uzi.OIDPolicyZNAuth, card.Auth.Cert.Policies[0].String())
	assert.Equal(t, uzi.OIDPolicyZNNonRepudiation, card.Sign.Cert.Policies[0].String())
	assert.Equal(t, uzi.OIDPolicyZNEncryption, card.Enc.Cert.Policies[0].String())
	assert.Equal(t, uzi.OIDPolicyMAuth, p.CardsOf(uzi.CardM)[0].Auth.Cert.Policies[0].String())
	assert.Equal(t, uzi.OIDPolicyMEncryption, p.CardsOf(uzi.CardM)[0].Enc.Cert.Policies[0].String())
	assert.Contains(t, card.Sign.Cert.UnknownExtKeyUsage[0].String(), uzi.OIDEKUDocumentSigning)
	assert.Equal(t, uzi.OIDEKUEFS, card.Enc.Cert.UnknownExtKeyUsage[0].String())
	assert.Equal(t, 2048, card.Auth.Cert.PublicKey.(interface{ Size() int }).Size()*8)
	assert.Equal(t, 3*365*24*time.Hour, card.Auth.Cert.NotAfter.Sub(card.Auth.Cert.NotBefore))
	assert.Equal(t, x509.SHA256WithRSA, card.Auth.Cert.SignatureAlgorithm)
	assert.GreaterOrEqual(t, card.Auth.Cert.SerialNumber.BitLen(), 152, "full-width random serial")
}

func TestServers(t *testing.T) {
	p := sharedPKI(t)
	tests := []struct {
		name string
		org  string
		cn   string
		ip   bool
	}{
		{ServerGateway, "A", "aortagw.test", false},
		{ServerLSP, "LSP", "localhost", true},
		{ServerSBVZ, "SBVZ", "localhost", true},
		{ServerOtherOrg, "B", "xis.ziekenhuis-zuid.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p.Servers[tt.name]
			require.NotNil(t, c)
			id, err := uzi.Parse(c.Cert)
			require.NoError(t, err)
			assert.Equal(t, uzi.CardS, id.CardType)
			assert.Equal(t, uzi.PurposeServer, id.Purpose)
			assert.Equal(t, p.Org(tt.org).URA, id.URA)
			assert.Equal(t, id.URA, id.PermanentURA)
			assert.Equal(t, "00.000", id.Role)
			ura, err := uzi.ServerURA(c.Cert, uzi.ParseOptions{}, true)
			require.NoError(t, err)
			assert.Equal(t, p.Org(tt.org).URA, ura)
			assert.Equal(t, tt.cn, c.Cert.Subject.CommonName)
			assert.Equal(t, []string{tt.cn}, c.Cert.DNSNames)
			assert.Equal(t, tt.ip, len(c.Cert.IPAddresses) == 1)
			assert.NotEmpty(t, c.Cert.Subject.Province)
			assert.NotEmpty(t, c.Cert.Subject.Locality)
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, c.Cert.ExtKeyUsage)
			_, err = c.Cert.Verify(x509.VerifyOptions{Roots: p.Roots(), Intermediates: p.Intermediates(), CurrentTime: p.Now, DNSName: tt.cn})
			require.NoError(t, err)
			assert.Len(t, c.Chain, 4)
			assert.Equal(t, p.ServerRoot.Cert.Raw, c.Chain[3].Raw)
			assertKeyMatches(t, c)
		})
	}
	assert.Same(t, p.Servers[ServerGateway], p.Server)
}

func TestEdgeCases(t *testing.T) {
	p := sharedPKI(t)
	e := p.Edge
	var inv x509.CertificateInvalidError
	err := verify(p, e.Expired.Cert, p.Now, p.Roots())
	require.ErrorAs(t, err, &inv)
	assert.Equal(t, x509.Expired, inv.Reason)
	err = verify(p, e.NotYetValid.Cert, p.Now, p.Roots())
	require.ErrorAs(t, err, &inv)
	assert.Equal(t, x509.Expired, inv.Reason)
	for _, c := range []*Cert{e.Expired, e.NotYetValid, e.Revoked, e.RevokedSign, e.RevokedAfterSigning} {
		_, err := uzi.Parse(c.Cert)
		assert.NoError(t, err, "%s is a well-formed UZI certificate", c.Name)
	}

	_, err = uzi.Parse(e.WrongUsageAuth.Cert)
	assert.ErrorIs(t, err, uzi.ErrKeyUsage)
	assert.Equal(t, x509.KeyUsageContentCommitment, e.WrongUsageAuth.Cert.KeyUsage)
	_, err = uzi.Parse(e.WrongUsageSign.Cert)
	assert.ErrorIs(t, err, uzi.ErrKeyUsage)
	assert.Equal(t, x509.KeyUsageDigitalSignature, e.WrongUsageSign.Cert.KeyUsage)

	victim := p.Cards[0]
	id, err := uzi.Parse(e.AttackerCard.Cert)
	require.NoError(t, err, "the attacker's card looks right")
	assert.Equal(t, victim.UZI, id.UZI)
	assert.Equal(t, victim.Auth.Cert.Issuer.String(), e.AttackerCard.Cert.Issuer.String())
	assert.Equal(t, p.Root.Cert.RawSubject, e.AttackerRoot.Cert.RawSubject)
	err = verify(p, e.AttackerCard.Cert, p.Now, p.Roots())
	require.Error(t, err, "attacker chain must not verify against the real root")
	var ua x509.UnknownAuthorityError
	assert.True(t, errors.As(err, &ua), "%v", err)
	pool := x509.NewCertPool()
	pool.AddCert(e.AttackerRoot.Cert)
	_, err = e.AttackerCard.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: p.Intermediates(), CurrentTime: p.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.Error(t, err, "real intermediates are no help either")
	ip := x509.NewCertPool()
	ip.AddCert(e.AttackerCA.Cert)
	_, err = e.AttackerCard.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, CurrentTime: p.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	assert.NoError(t, err, "it does verify against the attacker's own root")

	assert.True(t, e.RevokedAt.Before(e.SigningMoment))
	assert.True(t, e.SigningMoment.Before(e.RevokedAfterSigningAt))
	assert.True(t, e.RevokedAfterSigningAt.Before(p.Now))
}

func TestCRLs(t *testing.T) {
	p := sharedPKI(t)
	cas := map[string]*Cert{CARoot: p.Root, CAOrganisatiePersoon: p.Intermediate, CAServerRoot: p.ServerRoot,
		CAServerServices: p.ServerIntermediate}
	for k, v := range p.CAs {
		cas[k] = v
	}
	require.Len(t, p.CRLs, 8)
	for name, l := range p.CRLs {
		t.Run(name, func(t *testing.T) {
			assert.NoError(t, l.CheckSignatureFrom(cas[name].Cert))
			assert.Equal(t, p.Now, l.ThisUpdate)
			assert.Equal(t, p.Now.Add(48*time.Hour), l.NextUpdate)
			for other, c := range cas {
				if other != name {
					assert.Error(t, l.CheckSignatureFrom(c.Cert), "not signed by %s", other)
				}
			}
		})
	}
	revoked := map[string]time.Time{}
	for _, e := range p.CRLs[CAZorgverlener].RevokedCertificateEntries {
		revoked[e.SerialNumber.String()] = e.RevocationTime
	}
	assert.Len(t, revoked, 3)
	assert.Equal(t, p.Edge.RevokedAt, revoked[p.Edge.Revoked.Cert.SerialNumber.String()])
	assert.Equal(t, p.Edge.RevokedAt, revoked[p.Edge.RevokedSign.Cert.SerialNumber.String()])
	assert.Equal(t, p.Edge.RevokedAfterSigningAt, revoked[p.Edge.RevokedAfterSigning.Cert.SerialNumber.String()])
	_, ok := revoked[p.Cards[0].Auth.Cert.SerialNumber.String()]
	assert.False(t, ok)
	assert.Empty(t, p.CRLs[CAServer].RevokedCertificateEntries)

	st := p.Edge.StaleCRL
	assert.NoError(t, st.CheckSignatureFrom(p.CAs[CAZorgverlener].Cert))
	assert.True(t, st.NextUpdate.Before(p.Now), "stale CRL is past its nextUpdate")
	assert.Len(t, st.RevokedCertificateEntries, 3)
	assert.Len(t, p.CRLList(), 8)
}

func TestWriteLoadRoundTrip(t *testing.T) {
	p := sharedPKI(t)
	dir := t.TempDir()
	require.NoError(t, p.Write(dir))
	q, err := Load(dir)
	require.NoError(t, err)

	assert.Equal(t, p.Manifest, q.Manifest)
	assert.Equal(t, p.Now, q.Now)
	assert.Equal(t, p.Root.Cert.Raw, q.Root.Cert.Raw)
	assert.Equal(t, p.Server.Cert.Raw, q.Server.Cert.Raw)
	require.Len(t, q.Cards, len(p.Cards))
	for i, c := range p.Cards {
		d := q.Cards[i]
		assert.Equal(t, c.Name, d.Name)
		assert.Equal(t, c.UZI, d.UZI)
		for j, cc := range c.Certs() {
			dc := d.Certs()[j]
			assert.Equal(t, cc.Cert.Raw, dc.Cert.Raw)
			assert.True(t, cc.Key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(dc.Key), "key of %s", cc.Name)
			require.Len(t, dc.Chain, len(cc.Chain))
			for k := range cc.Chain {
				assert.Equal(t, cc.Chain[k].Raw, dc.Chain[k].Raw)
			}
		}
	}
	for n, l := range p.CRLs {
		assert.Equal(t, l.Raw, q.CRLs[n].Raw)
	}
	assert.Equal(t, p.Edge.StaleCRL.Raw, q.Edge.StaleCRL.Raw)
	assert.Equal(t, p.Edge.AttackerCard.Cert.Raw, q.Edge.AttackerCard.Cert.Raw)
	assert.Equal(t, p.Edge.RevokedAt, q.Edge.RevokedAt)

	for _, mc := range q.Manifest.Certificates {
		if mc.KeyPath == "" {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, mc.KeyPath))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), mc.KeyPath)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, "trust-bundle.pem"))
	require.NoError(t, err)
	assert.Equal(t, 2, bytes.Count(bundle, []byte("BEGIN CERTIFICATE")))
	der, err := os.ReadFile(filepath.Join(dir, "crl", "zorgverlener.crl"))
	require.NoError(t, err)
	assert.Equal(t, p.CRLs[CAZorgverlener].Raw, der)

	require.NoError(t, q.Write(t.TempDir()), "a loaded PKI can be written again")

	// Fail closed on a tampered manifest.
	js, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest.json"),
		[]byte(strings.Replace(string(js), `"path": "ca/root.pem"`, `"path": "../../etc/passwd"`, 1)), 0o644))
	_, err = Load(dir)
	assert.ErrorIs(t, err, ErrManifest)
	_, err = Load(t.TempDir())
	assert.ErrorIs(t, err, ErrManifest)
}

func TestManifestContents(t *testing.T) {
	p := sharedPKI(t)
	m := p.Manifest
	assert.Len(t, m.Cards, 6)
	assert.Len(t, m.People, 5, "Z and N holders; M cards are not personal")
	assert.Len(t, m.Organisations, 4)
	names := map[string]ManifestCert{}
	for _, c := range m.Certificates {
		names[c.Name] = c
	}
	aut := names["card/huisarts-a/aut"]
	assert.Equal(t, "authentication", aut.Purpose)
	assert.Equal(t, "Z", aut.Type)
	assert.Equal(t, p.Cards[0].UZI, aut.UZI)
	assert.Equal(t, "01.015", aut.Role)
	assert.Equal(t, []string{"ca/zorgverlener", "ca/organisatie-persoon", "ca/root"}, aut.Chain)
	assert.Equal(t, "card/huisarts-a/aut.key.pem", aut.KeyPath)
	assert.Empty(t, aut.KeyURI)
	assert.Equal(t, serialHex(p.Cards[0].Auth.Cert), aut.Serial)
}

func TestSeedDrivesNumbers(t *testing.T) {
	a, b, c := newPlanBuilder(7), newPlanBuilder(7), newPlanBuilder(8)
	for _, x := range []*builder{a, b, c} {
		x.buildOrgs()
	}
	assert.Equal(t, a.p.Orgs, b.p.Orgs)
	assert.NotEqual(t, a.p.Orgs, c.p.Orgs)
	assert.Equal(t, a.number("9", 9), b.number("9", 9))
}

func newPlanBuilder(seed int64) *builder {
	return &builder{rnd: seeded(seed), used: map[string]bool{}, p: &PKI{}}
}

func TestOptions(t *testing.T) {
	_, err := New(Options{SoftHSM: true})
	assert.ErrorIs(t, err, ErrOptions)
	_, err = (&PKI{}).Card("nope")
	assert.ErrorIs(t, err, ErrNotFound)
	c, err := sharedPKI(t).Card("balie-a")
	require.NoError(t, err)
	assert.Equal(t, uzi.CardM, c.Type)
	assert.Equal(t, "pkcs11:token=huisarts-a;id=%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/tmp/p%20x/a.pin",
		KeyURI("huisarts-a", []byte{2}, DefaultModulePath, "/tmp/p x/a.pin"))
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(Options{Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
