package testpki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aortagw/aortagw/internal/uzi"
)

// Sentinel errors.
var (
	// ErrOptions means the options cannot produce a PKI.
	ErrOptions = errors.New("testpki: invalid options")
	// ErrSoftHSMConf means SOFTHSM2_CONF points at another configuration than this PKI's.
	ErrSoftHSMConf = errors.New("testpki: SOFTHSM2_CONF points elsewhere (one token directory per process)")
	// ErrSoftHSM means provisioning a SoftHSM token failed.
	ErrSoftHSM = errors.New("testpki: softhsm provisioning failed")
	// ErrManifest means a manifest or the files it names cannot be read.
	ErrManifest = errors.New("testpki: bad manifest")
	// ErrNotFound means a named card or certificate does not exist.
	ErrNotFound = errors.New("testpki: not found")
)

// DefaultModulePath is the SoftHSM2 module on Debian.
const DefaultModulePath = "/usr/lib/softhsm/libsofthsm2.so"

// Names of the CAs in PKI.CAs and PKI.CRLs.
const (
	CAZorgverlener         = "zorgverlener"
	CAMedewerkerOpNaam     = "medewerker-op-naam"
	CAMedewerkerNietOpNaam = "medewerker-niet-op-naam"
	CAServer               = "server"
	CARoot                 = "root"                // TEST Staat der Nederlanden Root CA - G3
	CAOrganisatiePersoon   = "organisatie-persoon" // TEST ... Organisatie Persoon CA - G3
	CAServerRoot           = "server-root"         // TEST ... Private Root CA - G1
	CAServerServices       = "server-services"     // TEST ... Private Services CA - G1
)

// Names of the server certificates in PKI.Servers.
const (
	ServerGateway  = "gateway"   // the gateway's own certificate, organisation A (HSM id %10)
	ServerLSP      = "lsp"       // LSP simulator (localhost, 127.0.0.1); always a software key
	ServerSBVZ     = "sbvz"      // SBV-Z simulator (localhost, 127.0.0.1); always a software key
	ServerOtherOrg = "other-org" // a system of organisation B, for wrong-URA tests (HSM id %11)
)

// HSMToken is the label of the SoftHSM token holding the gateway and other-org server keys.
// The simulators' keys (LSP, SBV-Z) stand for outside parties and stay software keys.
const HSMToken = "hsm"

// Options configure New.
type Options struct {
	// Seed drives names and numbers (0 means 1). Keys, serials and PINs are always random.
	Seed int64
	// Now is the moment validity periods and CRLs are computed from (zero: time.Now).
	Now time.Time
	// Dir is where SoftHSM state and PIN files go; required with SoftHSM.
	Dir string
	// SoftHSM puts card and server keys into SoftHSM tokens (see the package comment).
	SoftHSM bool
	// ModulePath is the SoftHSM2 module (default DefaultModulePath).
	ModulePath string
}

// Cert is one certificate with its key.
type Cert struct {
	Name   string            // unique, e.g. "card/huisarts-a/aut", "server/gateway", "edge/expired"
	Cert   *x509.Certificate // the certificate
	Key    crypto.Signer     // software key; nil when the key lives in SoftHSM
	KeyURI string            // RFC 7512 URI of the key in SoftHSM, "" for software keys
	// Chain is leaf..root (Chain[0] == Cert).
	Chain []*x509.Certificate
	// KeyID is the CKA_ID in SoftHSM (nil for software keys).
	KeyID []byte
}

// Org is a care organisation (or the LSP/SBV-Z operator) with its URA.
type Org struct {
	Key      string // "A", "B", "LSP", "SBVZ"
	Name     string
	URA      string
	City     string
	Province string
}

// Card is a UZI pass. M cards have no Sign certificate.
type Card struct {
	Name     string       // also the SoftHSM token label
	Type     uzi.CardType // Z, N or M
	UZI      string
	URA      string
	Role     string // "01.015"; "00.000" for N and M
	RoleName string // "Huisarts"; the function for M cards
	AGB      string
	Person   string // full name; "" for M cards
	Org      string // Org.Key
	Auth     *Cert
	Sign     *Cert // nil for M
	Enc      *Cert
	// TokenLabel, PINFile and SOPINFile are set in SoftHSM mode.
	TokenLabel, PINFile, SOPINFile string
}

// NameID returns "<UZI>:<role>".
func (c *Card) NameID() string { return c.UZI + ":" + c.Role }

// Certs returns the card's certificates (AUT, HND if any, VRT).
func (c *Card) Certs() []*Cert {
	out := []*Cert{c.Auth}
	if c.Sign != nil {
		out = append(out, c.Sign)
	}
	return append(out, c.Enc)
}

// EdgeCases are certificates and CRLs that must be refused (or accepted only in a narrow case).
type EdgeCases struct {
	Expired     *Cert // Z AUT, NotAfter 10 days before Now
	NotYetValid *Cert // Z AUT, NotBefore 10 days after Now
	// Revoked (AUT) and RevokedSign (HND) belong to one Z card holder and were revoked at
	// RevokedAt, before SigningMoment.
	Revoked, RevokedSign *Cert
	RevokedAt            time.Time
	// SigningMoment is a moment in the past for "revoked after signing" tests:
	// RevokedAfterSigning (Z AUT) was revoked at RevokedAfterSigningAt, after SigningMoment and
	// before Now.
	SigningMoment         time.Time
	RevokedAfterSigning   *Cert
	RevokedAfterSigningAt time.Time
	// WrongUsageAuth has the AUT policy but keyUsage nonRepudiation only.
	WrongUsageAuth *Cert
	// WrongUsageSign has the HND policy but keyUsage digitalSignature.
	WrongUsageSign *Cert
	// AttackerRoot and AttackerCA copy the names of Root and the Zorgverlener CA;
	// AttackerCard is a Z AUT with the UZI number, URA and role of Cards[0].
	AttackerRoot, AttackerCA, AttackerCard *Cert
	// StaleCRL is a CRL of the Zorgverlener CA whose NextUpdate has passed.
	StaleCRL *x509.RevocationList
}

// PKI is a generated test PKI.
type PKI struct {
	Seed    int64
	Now     time.Time
	SoftHSM bool
	// Module and SoftHSMConf are set in SoftHSM mode.
	Module, SoftHSMConf string
	// Dir is where the PKI was written or loaded from ("" for a PKI only in memory).
	Dir string

	Root               *Cert            // TEST Staat der Nederlanden Root CA - G3
	Intermediate       *Cert            // TEST Staat der Nederlanden Organisatie Persoon CA - G3
	ServerRoot         *Cert            // TEST Staat der Nederlanden Private Root CA - G1
	ServerIntermediate *Cert            // TEST Staat der Nederlanden Private Services CA - G1
	CAs                map[string]*Cert // CAZorgverlener, CAMedewerkerOpNaam, CAMedewerkerNietOpNaam, CAServer
	Orgs               []Org
	Cards              []*Card
	Server             *Cert                           // = Servers[ServerGateway]
	Servers            map[string]*Cert                // ServerGateway, ServerLSP, ServerSBVZ, ServerOtherOrg
	CRLs               map[string]*x509.RevocationList // per CA name (all eight CAs)
	Edge               EdgeCases
	Manifest           Manifest

	all []*Cert // every certificate, in creation order
}

// Roots returns a pool with both test roots (cards G3 and servers G1).
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root.Cert)
	pool.AddCert(p.ServerRoot.Cert)
	return pool
}

// RootCerts returns both test roots.
func (p *PKI) RootCerts() []*x509.Certificate {
	return []*x509.Certificate{p.Root.Cert, p.ServerRoot.Cert}
}

// IntermediateCerts returns every non-root CA certificate.
func (p *PKI) IntermediateCerts() []*x509.Certificate {
	out := []*x509.Certificate{p.Intermediate.Cert, p.ServerIntermediate.Cert}
	for _, n := range caOrder[4:] {
		out = append(out, p.CAs[n].Cert)
	}
	return out
}

// Intermediates returns a pool with every non-root CA certificate.
func (p *PKI) Intermediates() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range p.IntermediateCerts() {
		pool.AddCert(c)
	}
	return pool
}

// LeafCerts returns every card and server certificate: the signing
// certificates a token may name by issuer and serial only.
func (p *PKI) LeafCerts() []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range p.Cards {
		for _, cc := range c.Certs() {
			out = append(out, cc.Cert)
		}
	}
	for _, s := range p.Servers {
		out = append(out, s.Cert)
	}
	return out
}

// CRLList returns the current CRLs of all CAs (not the stale one).
func (p *PKI) CRLList() []*x509.RevocationList {
	out := make([]*x509.RevocationList, 0, len(caOrder))
	for _, n := range caOrder {
		out = append(out, p.CRLs[n])
	}
	return out
}

// Card returns the card with the given name.
func (p *PKI) Card(name string) (*Card, error) {
	for _, c := range p.Cards {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: card %q", ErrNotFound, name)
}

// CardsOf returns the cards of one type, in generation order.
func (p *PKI) CardsOf(t uzi.CardType) []*Card {
	var out []*Card
	for _, c := range p.Cards {
		if c.Type == t {
			out = append(out, c)
		}
	}
	return out
}

// Org returns the organisation with the given key ("A", "B", "LSP", "SBVZ").
func (p *PKI) Org(key string) Org {
	for _, o := range p.Orgs {
		if o.Key == key {
			return o
		}
	}
	return Org{}
}

// caOrder lists the CA names: the two roots first, then intermediates and issuing CAs.
var caOrder = []string{CARoot, CAServerRoot, CAOrganisatiePersoon, CAServerServices,
	CAZorgverlener, CAMedewerkerOpNaam, CAMedewerkerNietOpNaam, CAServer}

var (
	sharedOnce sync.Once
	shared     *PKI
	sharedErr  error
)

// Shared returns one in-memory PKI (software keys, Seed 1, Now = first call) per process, so
// the RSA key generation is paid once per test binary. Callers must not modify it.
func Shared() (*PKI, error) {
	sharedOnce.Do(func() { shared, sharedErr = New(Options{Seed: 1}) })
	return shared, sharedErr
}

// Default returns Shared and fails the test when the PKI cannot be built.
func Default(t testing.TB) *PKI {
	t.Helper()
	p, err := Shared()
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return p
}

// seeded returns the deterministic source for names and numbers.
func seeded(seed int64) *rand.Rand {
	if seed == 0 {
		seed = 1
	}
	return rand.New(rand.NewPCG(uint64(seed), 0x41_4f_52_54_41_47_57)) // "AORTAGW"
}
