package testpki

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aortagw/aortagw/internal/uzi"
)

// ManifestVersion is the version of manifest.json this package writes and reads.
const ManifestVersion = 1

// Manifest is manifest.json: every organisation, person, card, certificate, key, CRL and PIN
// file of a PKI. Paths are relative to the PKI directory, except PIN files and the SoftHSM
// configuration, which are absolute (they are also inside key URIs).
type Manifest struct {
	Version       int              `json:"version"`
	Seed          int64            `json:"seed"`
	Now           time.Time        `json:"now"`
	SoftHSM       bool             `json:"softhsm"`
	Module        string           `json:"module,omitempty"`
	SoftHSMConf   string           `json:"softhsm_conf,omitempty"`
	TrustBundle   string           `json:"trust_bundle"`
	Intermediates string           `json:"intermediates"`
	Organisations []ManifestOrg    `json:"organisations"`
	People        []ManifestPerson `json:"people"`
	Cards         []ManifestCard   `json:"cards"`
	Certificates  []ManifestCert   `json:"certificates"`
	CRLs          []ManifestCRL    `json:"crls"`
	Edge          ManifestEdge     `json:"edge"`
}

// ManifestOrg is one organisation.
type ManifestOrg struct {
	Key      string `json:"key"`
	Name     string `json:"name"`
	URA      string `json:"ura"`
	City     string `json:"city"`
	Province string `json:"province"`
}

// ManifestPerson is the holder of a Z or N card.
type ManifestPerson struct {
	Name     string `json:"name"`
	UZI      string `json:"uzi"`
	Role     string `json:"role"`
	RoleName string `json:"role_name"`
	URA      string `json:"ura"`
	Card     string `json:"card"`
}

// ManifestCard is one UZI pass.
type ManifestCard struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	UZI          string   `json:"uzi"`
	URA          string   `json:"ura"`
	Role         string   `json:"role"`
	RoleName     string   `json:"role_name"`
	AGB          string   `json:"agb"`
	Person       string   `json:"person,omitempty"`
	Org          string   `json:"org"`
	Token        string   `json:"token,omitempty"`
	PINFile      string   `json:"pin_file,omitempty"`
	SOPINFile    string   `json:"so_pin_file,omitempty"`
	Certificates []string `json:"certificates"`
}

// ManifestCert is one certificate and where its key is.
type ManifestCert struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"` // ca, card, server, edge
	Purpose   string    `json:"purpose,omitempty"`
	Type      string    `json:"type,omitempty"`
	UZI       string    `json:"uzi,omitempty"`
	URA       string    `json:"ura,omitempty"`
	Role      string    `json:"role,omitempty"`
	DNS       []string  `json:"dns,omitempty"`
	Path      string    `json:"path"`
	ChainPath string    `json:"chain_path,omitempty"`
	KeyPath   string    `json:"key_path,omitempty"`
	KeyURI    string    `json:"key_uri,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Chain names the issuing certificates, nearest first, up to the root.
	Chain []string `json:"chain,omitempty"`
}

// ManifestCRL is one CRL.
type ManifestCRL struct {
	CA         string            `json:"ca"`
	Stale      bool              `json:"stale,omitempty"`
	PEM        string            `json:"pem"`
	DER        string            `json:"der"`
	ThisUpdate time.Time         `json:"this_update"`
	NextUpdate time.Time         `json:"next_update"`
	Revoked    []ManifestRevoked `json:"revoked,omitempty"`
}

// ManifestRevoked is one CRL entry.
type ManifestRevoked struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate,omitempty"`
	Time        time.Time `json:"time"`
}

// ManifestEdge holds the moments of the revocation edge cases.
type ManifestEdge struct {
	RevokedAt             time.Time `json:"revoked_at"`
	SigningMoment         time.Time `json:"signing_moment"`
	RevokedAfterSigningAt time.Time `json:"revoked_after_signing_at"`
}

func serialHex(c *x509.Certificate) string {
	return strings.ToUpper(hex.EncodeToString(c.SerialNumber.Bytes()))
}

func crlPaths(ca string, stale bool) (string, string) {
	base := "crl/" + ca
	if stale {
		base += "-stale"
	}
	return base + ".crl.pem", base + ".crl"
}

// manifest describes what the builder made.
func (b *builder) manifest() Manifest {
	p := b.p
	m := Manifest{Version: ManifestVersion, Seed: p.Seed, Now: p.Now, SoftHSM: p.SoftHSM, Module: p.Module,
		SoftHSMConf: p.SoftHSMConf, TrustBundle: "trust-bundle.pem", Intermediates: "intermediates.pem",
		Edge: ManifestEdge{RevokedAt: p.Edge.RevokedAt, SigningMoment: p.Edge.SigningMoment,
			RevokedAfterSigningAt: p.Edge.RevokedAfterSigningAt}}
	for _, o := range p.Orgs {
		m.Organisations = append(m.Organisations, ManifestOrg(o))
	}
	byCert := map[*x509.Certificate]string{}
	for _, c := range b.certs {
		byCert[c.Cert] = c.Name
	}
	for _, c := range b.certs {
		kind, _, _ := strings.Cut(c.Name, "/")
		mc := ManifestCert{Name: c.Name, Kind: kind, Path: c.Name + ".pem", KeyURI: c.KeyURI,
			Serial: serialHex(c.Cert), Subject: c.Cert.Subject.String(), Issuer: c.Cert.Issuer.String(),
			NotBefore: c.Cert.NotBefore, NotAfter: c.Cert.NotAfter, DNS: c.Cert.DNSNames}
		if c.Key != nil {
			mc.KeyPath = c.Name + ".key.pem"
		}
		if c.KeyID != nil {
			mc.KeyID = hex.EncodeToString(c.KeyID)
		}
		if kind != "ca" {
			mc.ChainPath = c.Name + ".chain.pem"
		}
		for _, ic := range c.Chain[1:] {
			mc.Chain = append(mc.Chain, byCert[ic])
		}
		if meta, ok := b.meta[c.Name]; ok {
			mc.Purpose, mc.Type, mc.UZI, mc.URA, mc.Role = meta.purpose.String(), meta.typ.String(), meta.uzi, meta.ura, meta.role
		}
		m.Certificates = append(m.Certificates, mc)
	}
	for _, c := range p.Cards {
		mc := ManifestCard{Name: c.Name, Type: c.Type.String(), UZI: c.UZI, URA: c.URA, Role: c.Role,
			RoleName: c.RoleName, AGB: c.AGB, Person: c.Person, Org: c.Org, Token: c.TokenLabel,
			PINFile: c.PINFile, SOPINFile: c.SOPINFile}
		for _, cc := range c.Certs() {
			mc.Certificates = append(mc.Certificates, cc.Name)
		}
		m.Cards = append(m.Cards, mc)
		if c.Person != "" {
			m.People = append(m.People, ManifestPerson{Name: c.Person, UZI: c.UZI, Role: c.Role, RoleName: c.RoleName, URA: c.URA, Card: c.Name})
		}
	}
	addCRL := func(ca string, l *x509.RevocationList, stale bool) {
		pemPath, derPath := crlPaths(ca, stale)
		mc := ManifestCRL{CA: ca, Stale: stale, PEM: pemPath, DER: derPath, ThisUpdate: l.ThisUpdate, NextUpdate: l.NextUpdate}
		for _, e := range l.RevokedCertificateEntries {
			name := ""
			for _, c := range b.certs {
				if c.Cert.SerialNumber.Cmp(e.SerialNumber) == 0 {
					name = c.Name
				}
			}
			mc.Revoked = append(mc.Revoked, ManifestRevoked{Serial: strings.ToUpper(hex.EncodeToString(e.SerialNumber.Bytes())), Certificate: name, Time: e.RevocationTime})
		}
		m.CRLs = append(m.CRLs, mc)
	}
	for _, ca := range caOrder {
		addCRL(ca, p.CRLs[ca], false)
	}
	addCRL(CAZorgverlener, p.Edge.StaleCRL, true)
	p.all = b.certs
	return m
}

// Write stores the PKI in dir: certificates (PEM), chains, software keys (PKCS#8 PEM, 0600),
// CRLs (PEM and DER), trust-bundle.pem (both roots), intermediates.pem and manifest.json.
// SoftHSM state and PIN files were written by New into Options.Dir and are not copied.
func (p *PKI) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	write := func(rel string, data []byte, mode os.FileMode) error {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		return os.WriteFile(path, data, mode)
	}
	certPEM := func(cs ...*x509.Certificate) []byte {
		var out []byte
		for _, c := range cs {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return out
	}
	byName := map[string]*Cert{}
	for _, c := range p.all {
		byName[c.Name] = c
	}
	for _, mc := range p.Manifest.Certificates {
		c := byName[mc.Name]
		if c == nil {
			return fmt.Errorf("%w: certificate %s not in memory", ErrManifest, mc.Name)
		}
		if err := write(mc.Path, certPEM(c.Cert), 0o644); err != nil {
			return err
		}
		if mc.ChainPath != "" {
			if err := write(mc.ChainPath, certPEM(c.Chain[:len(c.Chain)-1]...), 0o644); err != nil {
				return err
			}
		}
		if mc.KeyPath != "" && c.Key != nil {
			der, err := x509.MarshalPKCS8PrivateKey(c.Key)
			if err != nil {
				return fmt.Errorf("testpki: marshal key %s: %w", c.Name, err)
			}
			if err := write(mc.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return err
			}
		}
	}
	for _, ml := range p.Manifest.CRLs {
		l := p.CRLs[ml.CA]
		if ml.Stale {
			l = p.Edge.StaleCRL
		}
		if err := write(ml.DER, l.Raw, 0o644); err != nil {
			return err
		}
		if err := write(ml.PEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: l.Raw}), 0o644); err != nil {
			return err
		}
	}
	if err := write(p.Manifest.TrustBundle, certPEM(p.RootCerts()...), 0o644); err != nil {
		return err
	}
	if err := write(p.Manifest.Intermediates, certPEM(p.IntermediateCerts()...), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(p.Manifest, "", "  ")
	if err != nil {
		return err
	}
	return write("manifest.json", append(js, '\n'), 0o644)
}

// Load reads a PKI written by Write. Keys in SoftHSM stay there (Cert.Key nil, Cert.KeyURI set).
func Load(dir string) (*PKI, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrManifest, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: unsupported version (version=%d)", ErrManifest, m.Version)
	}
	read := func(rel string) ([]byte, error) {
		if rel == "" || filepath.IsAbs(rel) || slices.Contains(strings.Split(rel, "/"), "..") {
			return nil, fmt.Errorf("%w: bad relative path (path=%q)", ErrManifest, rel)
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrManifest, err)
		}
		return b, nil
	}
	p := &PKI{Seed: m.Seed, Now: m.Now, SoftHSM: m.SoftHSM, Module: m.Module, SoftHSMConf: m.SoftHSMConf, Dir: dir,
		CAs: map[string]*Cert{}, Servers: map[string]*Cert{}, CRLs: map[string]*x509.RevocationList{}, Manifest: m}
	byName := map[string]*Cert{}
	for _, mc := range m.Certificates {
		b, err := read(mc.Path)
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: no certificate in %s", ErrManifest, mc.Path)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrManifest, mc.Path, err)
		}
		c := &Cert{Name: mc.Name, Cert: cert, KeyURI: mc.KeyURI}
		if mc.KeyID != "" {
			if c.KeyID, err = hex.DecodeString(mc.KeyID); err != nil {
				return nil, fmt.Errorf("%w: key id of %s", ErrManifest, mc.Name)
			}
		}
		if mc.KeyPath != "" {
			kb, err := read(mc.KeyPath)
			if err != nil {
				return nil, err
			}
			kblk, _ := pem.Decode(kb)
			if kblk == nil {
				return nil, fmt.Errorf("%w: no key in %s", ErrManifest, mc.KeyPath)
			}
			k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrManifest, mc.KeyPath, err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("%w: %s is not a signing key", ErrManifest, mc.KeyPath)
			}
			c.Key = s
		}
		if _, dup := byName[mc.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate certificate %s", ErrManifest, mc.Name)
		}
		byName[mc.Name] = c
		p.all = append(p.all, c)
	}
	for _, mc := range m.Certificates {
		c := byName[mc.Name]
		c.Chain = []*x509.Certificate{c.Cert}
		for _, n := range mc.Chain {
			ic, ok := byName[n]
			if !ok {
				return nil, fmt.Errorf("%w: chain of %s names unknown %s", ErrManifest, mc.Name, n)
			}
			c.Chain = append(c.Chain, ic.Cert)
		}
	}
	get := func(name string) (*Cert, error) {
		c, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%w: missing certificate %s", ErrManifest, name)
		}
		return c, nil
	}
	var errs []error
	must := func(dst **Cert, name string) {
		c, err := get(name)
		errs = append(errs, err)
		*dst = c
	}
	must(&p.Root, "ca/"+CARoot)
	must(&p.Intermediate, "ca/"+CAOrganisatiePersoon)
	must(&p.ServerRoot, "ca/"+CAServerRoot)
	must(&p.ServerIntermediate, "ca/"+CAServerServices)
	for _, n := range []string{CAZorgverlener, CAMedewerkerOpNaam, CAMedewerkerNietOpNaam, CAServer} {
		var c *Cert
		must(&c, "ca/"+n)
		p.CAs[n] = c
	}
	for _, n := range []string{ServerGateway, ServerLSP, ServerSBVZ, ServerOtherOrg} {
		var c *Cert
		must(&c, "server/"+n)
		p.Servers[n] = c
	}
	p.Server = p.Servers[ServerGateway]
	e := &p.Edge
	for dst, n := range map[**Cert]string{&e.Expired: "expired", &e.NotYetValid: "not-yet-valid", &e.Revoked: "revoked",
		&e.RevokedSign: "revoked-sign", &e.RevokedAfterSigning: "revoked-after-signing", &e.WrongUsageAuth: "wrong-usage-auth",
		&e.WrongUsageSign: "wrong-usage-sign", &e.AttackerRoot: "attacker-root", &e.AttackerCA: "attacker-ca", &e.AttackerCard: "attacker-card"} {
		must(dst, "edge/"+n)
	}
	e.RevokedAt, e.SigningMoment, e.RevokedAfterSigningAt = m.Edge.RevokedAt, m.Edge.SigningMoment, m.Edge.RevokedAfterSigningAt
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, o := range m.Organisations {
		p.Orgs = append(p.Orgs, Org(o))
	}
	for _, mc := range m.Cards {
		if len(mc.Type) != 1 {
			return nil, fmt.Errorf("%w: card %s type %q", ErrManifest, mc.Name, mc.Type)
		}
		c := &Card{Name: mc.Name, Type: uzi.CardType(mc.Type[0]), UZI: mc.UZI, URA: mc.URA, Role: mc.Role, RoleName: mc.RoleName,
			AGB: mc.AGB, Person: mc.Person, Org: mc.Org, TokenLabel: mc.Token, PINFile: mc.PINFile, SOPINFile: mc.SOPINFile}
		for _, n := range mc.Certificates {
			cc, err := get(n)
			if err != nil {
				return nil, err
			}
			switch {
			case strings.HasSuffix(n, "/aut"):
				c.Auth = cc
			case strings.HasSuffix(n, "/hnd"):
				c.Sign = cc
			case strings.HasSuffix(n, "/vrt"):
				c.Enc = cc
			default:
				return nil, fmt.Errorf("%w: card certificate %s", ErrManifest, n)
			}
		}
		if c.Auth == nil || c.Enc == nil || (c.Type != uzi.CardM) != (c.Sign != nil) {
			return nil, fmt.Errorf("%w: card %s misses certificates", ErrManifest, mc.Name)
		}
		p.Cards = append(p.Cards, c)
	}
	for _, ml := range m.CRLs {
		b, err := read(ml.DER)
		if err != nil {
			return nil, err
		}
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrManifest, ml.DER, err)
		}
		if ml.Stale {
			p.Edge.StaleCRL = l
		} else {
			p.CRLs[ml.CA] = l
		}
	}
	for _, ca := range caOrder {
		if p.CRLs[ca] == nil {
			return nil, fmt.Errorf("%w: missing CRL of %s", ErrManifest, ca)
		}
	}
	if p.Edge.StaleCRL == nil {
		return nil, fmt.Errorf("%w: missing stale CRL", ErrManifest)
	}
	return p, nil
}
