package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aortagw/aortagw/internal/uzi"
)

const (
	cardValidity   = 3 * 365 * 24 * time.Hour // CPS: 3 years
	crlNextUpdate  = 48 * time.Hour           // CPS: nextUpdate + 48 h
	cdpBase        = "http://crl.uzi-register.test/cdp/"
	aiaBase        = "http://cert.pkioverheid.test/"
	pdsURL         = "https://www.uziregister.test/pds/pds-en.pdf"
	cibgOrgID      = "NTRNL-50000535"
	testCertPrefix = "TEST "
)

// keyPool generates RSA-2048 keys on at most two goroutines ahead of use.
type keyPool struct {
	ch   chan result
	stop chan struct{}
	wg   sync.WaitGroup
}

type result struct {
	key *rsa.PrivateKey
	err error
}

func newKeyPool(workers int) *keyPool {
	p := &keyPool{ch: make(chan result, 1), stop: make(chan struct{})}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				select {
				case p.ch <- result{k, err}:
				case <-p.stop:
					return
				}
			}
		}()
	}
	return p
}

func (p *keyPool) get() (*rsa.PrivateKey, error) {
	r := <-p.ch
	return r.key, r.err
}

func (p *keyPool) close() {
	close(p.stop)
	p.wg.Wait()
}

// builder carries the state of one New call.
type builder struct {
	opts    Options
	now     time.Time
	rnd     *mrand.Rand
	keys    *keyPool
	hsm     *hsm
	used    map[string]bool
	p       *PKI
	revoked map[string][]x509.RevocationListEntry
	certs   []*Cert // every certificate, in creation order
	meta    map[string]certMeta
}

// certMeta is what the manifest says about an end-entity certificate.
type certMeta struct {
	typ            uzi.CardType
	purpose        uzi.KeyPurpose
	uzi, ura, role string
}

// New generates a test PKI. See the package comment for what it contains and costs.
func New(opts Options) (*PKI, error) {
	if opts.SoftHSM && opts.Dir == "" {
		return nil, fmt.Errorf("%w: SoftHSM needs Dir", ErrOptions)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	b := &builder{opts: opts, now: now, rnd: seeded(seed), used: map[string]bool{}, meta: map[string]certMeta{},
		revoked: map[string][]x509.RevocationListEntry{},
		p: &PKI{Seed: seed, Now: now, SoftHSM: opts.SoftHSM, CAs: map[string]*Cert{},
			Servers: map[string]*Cert{}, CRLs: map[string]*x509.RevocationList{}}}
	if opts.SoftHSM {
		h, err := openHSM(opts.Dir, opts.ModulePath)
		if err != nil {
			return nil, err
		}
		defer h.close()
		b.hsm = h
		b.p.Module, b.p.SoftHSMConf, b.p.Dir = h.module, h.conf, h.dir
	}
	b.keys = newKeyPool(2)
	defer b.keys.close()
	if err := b.build(); err != nil {
		return nil, err
	}
	b.p.Manifest = b.manifest()
	return b.p, nil
}

func (b *builder) build() error {
	if err := b.buildCAs(); err != nil {
		return err
	}
	b.buildOrgs()
	if err := b.buildCards(); err != nil {
		return err
	}
	if err := b.buildServers(); err != nil {
		return err
	}
	if err := b.buildEdge(); err != nil {
		return err
	}
	return b.buildCRLs()
}

// ---- names and numbers ----

type attr struct {
	oid string
	val string
}

var attrOIDs = map[string]asn1.ObjectIdentifier{
	"C": {2, 5, 4, 6}, "ST": {2, 5, 4, 8}, "L": {2, 5, 4, 7}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11},
	"CN": {2, 5, 4, 3}, "serialNumber": {2, 5, 4, 5}, "title": {2, 5, 4, 12}, "givenName": {2, 5, 4, 42},
	"surname": {2, 5, 4, 4}, "organizationIdentifier": {2, 5, 4, 97},
}

// dn encodes the attributes in the given order, one per RDN. Country and serialNumber are
// PrintableString, the rest UTF8String (as PKIoverheid certificates do).
func dn(attrs ...attr) ([]byte, error) {
	var seq pkix.RDNSequence
	for _, a := range attrs {
		var v any = a.val
		if a.oid != "C" && a.oid != "serialNumber" && a.oid != "organizationIdentifier" {
			v = asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(a.val)}
		}
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: attrOIDs[a.oid], Value: v}})
	}
	return asn1.Marshal(seq)
}

func cibgDN(cn string) ([]byte, error) {
	return dn(attr{"C", "NL"}, attr{"O", "CIBG"}, attr{"organizationIdentifier", cibgOrgID}, attr{"CN", cn})
}

func staatDN(cn string) ([]byte, error) {
	return dn(attr{"C", "NL"}, attr{"O", testCertPrefix + "Staat der Nederlanden"}, attr{"CN", cn})
}

// number returns a fresh number of n digits starting with prefix, unique within this PKI.
func (b *builder) number(prefix string, n int) string {
	for {
		s := prefix
		for len(s) < n {
			s += string(rune('0' + b.rnd.IntN(10)))
		}
		if !b.used[s] {
			b.used[s] = true
			return s
		}
	}
}

// serial returns a random positive 20-octet serial number (full width, high bit clear).
func serial() (*big.Int, error) {
	buf := make([]byte, 20)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	buf[0] = buf[0]&0x7f | 0x40
	return new(big.Int).SetBytes(buf), nil
}

// ---- issuing ----

// subjectKeyID is RFC 5280 method 1: SHA-1 over the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // RFC 5280 key identifier, not a signature
	return sum[:], nil
}

// issue signs tmpl with parent (nil = self-signed with key) over pub and registers the result.
func (b *builder) issue(name string, tmpl *x509.Certificate, parent *Cert, pub crypto.PublicKey, key crypto.Signer) (*Cert, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn
	if tmpl.SubjectKeyId == nil {
		if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
			return nil, err
		}
	}
	tmpl.SignatureAlgorithm = x509.SHA256WithRSA
	issuerCert, signer := tmpl, key
	if parent != nil {
		issuerCert, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("testpki: issue %s: %w", name, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parse %s: %w", name, err)
	}
	out := &Cert{Name: name, Cert: c, Key: key, Chain: []*x509.Certificate{c}}
	if parent != nil {
		out.Chain = append(out.Chain, parent.Chain...)
	}
	b.certs = append(b.certs, out)
	return out, nil
}

func (b *builder) newCA(name, cn string, subject []byte, parent *Cert, maxPath int, years int) (*Cert, error) {
	key, err := b.keys.get()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		RawSubject: subject, NotBefore: b.now.AddDate(-2, 0, 0), NotAfter: b.now.AddDate(years, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: maxPath, MaxPathLenZero: maxPath == 0,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if parent != nil {
		tmpl.CRLDistributionPoints = []string{cdpBase + parentCRLName(parent) + ".crl"}
		tmpl.IssuingCertificateURL = []string{aiaBase + strings.ReplaceAll(parent.Cert.Subject.CommonName, " ", "_") + ".cer"}
	}
	c, err := b.issue("ca/"+name, tmpl, parent, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	_ = cn
	return c, nil
}

func parentCRLName(parent *Cert) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(parent.Cert.Subject.CommonName, testCertPrefix), " ", "_"))
}

func (b *builder) buildCAs() error {
	p := b.p
	type spec struct {
		name, cn string
		staat    bool
		parent   *(*Cert)
		maxPath  int
		years    int
		dst      **Cert
	}
	var zv, mon, mnon, srv *Cert
	specs := []spec{
		{CARoot, "TEST Staat der Nederlanden Root CA - G3", true, nil, -1, 20, &p.Root},
		{CAOrganisatiePersoon, "TEST Staat der Nederlanden Organisatie Persoon CA - G3", true, &p.Root, 1, 15, &p.Intermediate},
		{CAZorgverlener, "TEST UZI-register Zorgverlener CA G3", false, &p.Intermediate, 0, 10, &zv},
		{CAMedewerkerOpNaam, "TEST UZI-register Medewerker op naam CA G3", false, &p.Intermediate, 0, 10, &mon},
		{CAMedewerkerNietOpNaam, "TEST UZI-register Medewerker niet op naam CA G3", false, &p.Intermediate, 0, 10, &mnon},
		{CAServerRoot, "TEST Staat der Nederlanden Private Root CA - G1", true, nil, -1, 20, &p.ServerRoot},
		{CAServerServices, "TEST Staat der Nederlanden Private Services CA - G1", true, &p.ServerRoot, 1, 15, &p.ServerIntermediate},
		{CAServer, "TEST UZI-register Private Server CA G1", false, &p.ServerIntermediate, 0, 10, &srv},
	}
	for _, s := range specs {
		var subj []byte
		var err error
		if s.staat {
			subj, err = staatDN(s.cn)
		} else {
			subj, err = cibgDN(s.cn)
		}
		if err != nil {
			return err
		}
		var parent *Cert
		if s.parent != nil {
			parent = *s.parent
		}
		c, err := b.newCA(s.name, s.cn, subj, parent, s.maxPath, s.years)
		if err != nil {
			return err
		}
		*s.dst = c
	}
	p.CAs[CAZorgverlener], p.CAs[CAMedewerkerOpNaam], p.CAs[CAMedewerkerNietOpNaam], p.CAs[CAServer] = zv, mon, mnon, srv
	return nil
}

// ---- organisations and people ----

var (
	givenNames = []string{"Anna", "Bram", "Carmen", "Daan", "Eline", "Fatima", "Gijs", "Hanna", "Ilse",
		"Jeroen", "Karim", "Lotte", "Mehmet", "Noor", "Otto", "Priya", "Ruben", "Sanne", "Thijs", "Yara"}
	surnames = []string{"de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
		"de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Dijk", "Yilmaz"}
	cities = []struct{ city, province string }{{"Utrecht", "Utrecht"}, {"Rotterdam", "Zuid-Holland"},
		{"Zwolle", "Overijssel"}, {"Leeuwarden", "Friesland"}, {"Maastricht", "Limburg"}, {"Arnhem", "Gelderland"}}
)

func (b *builder) buildOrgs() {
	pick := func() (string, string) {
		c := cities[b.rnd.IntN(len(cities))]
		return c.city, c.province
	}
	mk := func(key, name string) Org {
		city, prov := pick()
		return Org{Key: key, Name: name, URA: b.number("9", 8), City: city, Province: prov}
	}
	b.p.Orgs = []Org{
		mk("A", "TEST Gezondheidscentrum De Linde"),
		mk("B", "TEST Ziekenhuis Zuid"),
		mk("LSP", "TEST VZVZ Servicecentrum"),
		mk("SBVZ", "TEST CIBG SBV-Z"),
	}
}

// person returns a name whose given name is not used yet in this PKI (while names last).
func (b *builder) person() (given, surname string) {
	for range 100 {
		given = givenNames[b.rnd.IntN(len(givenNames))]
		if !b.used["given:"+given] {
			break
		}
	}
	b.used["given:"+given] = true
	return given, surnames[b.rnd.IntN(len(surnames))]
}

// cardSpec is one card of the default set.
type cardSpec struct {
	name     string
	typ      uzi.CardType
	org      string
	role     string
	roleName string
	agbPref  string // "" = 00000000
}

var defaultCards = []cardSpec{
	{"huisarts-a", uzi.CardZ, "A", "01.015", "Huisarts", "01"},
	{"apotheker-a", uzi.CardZ, "A", "17.075", "Openbaar apotheker", ""},
	{"assistent-a", uzi.CardN, "A", "00.000", "Doktersassistent", ""},
	{"balie-a", uzi.CardM, "A", "00.000", "Baliemedewerker", ""},
	{"cardioloog-b", uzi.CardZ, "B", "01.010", "Cardioloog", ""},
	{"secretaresse-b", uzi.CardN, "B", "00.000", "Medisch secretaresse", ""},
}

func (b *builder) caFor(t uzi.CardType) *Cert {
	switch t {
	case uzi.CardZ:
		return b.p.CAs[CAZorgverlener]
	case uzi.CardN:
		return b.p.CAs[CAMedewerkerOpNaam]
	case uzi.CardM:
		return b.p.CAs[CAMedewerkerNietOpNaam]
	}
	return b.p.CAs[CAServer]
}

func (b *builder) buildCards() error {
	for _, s := range defaultCards {
		org := b.p.Org(s.org)
		c := &Card{Name: s.name, Type: s.typ, UZI: b.number("9", 9), URA: org.URA, Role: s.role,
			RoleName: s.roleName, AGB: "00000000", Org: s.org}
		if s.agbPref != "" {
			c.AGB = b.number(s.agbPref, 8)
		}
		var given, sur string
		if s.typ != uzi.CardM {
			given, sur = b.person()
			c.Person = given + " " + sur
		}
		if b.hsm != nil {
			if err := b.hsm.initToken(c); err != nil {
				return err
			}
		}
		purposes := []uzi.KeyPurpose{uzi.PurposeAuthentication, uzi.PurposeNonRepudiation, uzi.PurposeEncryption}
		if s.typ == uzi.CardM {
			purposes = []uzi.KeyPurpose{uzi.PurposeAuthentication, uzi.PurposeEncryption}
		}
		for i, pu := range purposes {
			lp := leafParams{card: c, given: given, surname: sur, purpose: pu, ca: b.caFor(s.typ), org: org,
				name: "card/" + c.Name + "/" + strings.ToLower(pu.Short())}
			var cert *Cert
			var err error
			if b.hsm != nil {
				cert, err = b.hsmLeaf(lp, c.TokenLabel, c.PINFile, []byte{byte(i + 1)}, pu == uzi.PurposeNonRepudiation)
			} else {
				cert, err = b.softLeaf(lp)
			}
			if err != nil {
				return err
			}
			switch pu {
			case uzi.PurposeAuthentication:
				c.Auth = cert
			case uzi.PurposeNonRepudiation:
				c.Sign = cert
			case uzi.PurposeEncryption:
				c.Enc = cert
			}
		}
		b.p.Cards = append(b.p.Cards, c)
	}
	return nil
}

// leafParams describe one end-entity certificate.
type leafParams struct {
	name    string
	card    *Card // holder (for S: UZI/URA/Role/AGB only)
	given   string
	surname string
	purpose uzi.KeyPurpose
	ca      *Cert
	org     Org
	dns     []string
	ips     []net.IP
	cn      string // S: FQDN
	// overrides for edge cases
	notBefore, notAfter time.Time
	keyUsage            x509.KeyUsage
	oidCA               string
}

func (b *builder) softLeaf(lp leafParams) (*Cert, error) {
	key, err := b.keys.get()
	if err != nil {
		return nil, err
	}
	tmpl, err := b.leafTemplate(lp)
	if err != nil {
		return nil, err
	}
	return b.issue(lp.name, tmpl, lp.ca, &key.PublicKey, key)
}

// leafTemplate builds the UZI profile of aorta-uzi.md section 8 for one certificate.
func (b *builder) leafTemplate(lp leafParams) (*x509.Certificate, error) {
	c := lp.card
	var attrs []attr
	switch c.Type {
	case uzi.CardZ:
		attrs = []attr{{"C", "NL"}, {"O", lp.org.Name}, {"title", c.RoleName}, {"CN", c.Person},
			{"givenName", lp.given}, {"surname", lp.surname}, {"serialNumber", c.UZI}}
	case uzi.CardN:
		attrs = []attr{{"C", "NL"}, {"O", lp.org.Name}, {"CN", c.Person},
			{"givenName", lp.given}, {"surname", lp.surname}, {"serialNumber", c.UZI}}
	case uzi.CardM:
		attrs = []attr{{"C", "NL"}, {"O", lp.org.Name}, {"OU", "Balie"}, {"CN", c.RoleName}, {"serialNumber", c.UZI}}
	case uzi.CardS:
		attrs = []attr{{"C", "NL"}, {"ST", lp.org.Province}, {"L", lp.org.City}, {"O", lp.org.Name},
			{"CN", lp.cn}, {"serialNumber", c.UZI}}
	}
	subject, err := dn(attrs...)
	if err != nil {
		return nil, err
	}
	oidCA := lp.oidCA
	if oidCA == "" {
		oidCA = uzi.CAOIDFor(c.Type, true)
	}
	sid := uzi.SubjectID{OIDCA: oidCA, Version: "1", UZI: c.UZI, Type: c.Type, URA: c.URA, Role: c.Role, AGB: c.AGB}
	var names []asn1.RawValue
	for _, d := range lp.dns {
		names = append(names, uzi.DNSName(d))
	}
	for _, ip := range lp.ips {
		names = append(names, uzi.IPName(ip))
	}
	sidName, err := uzi.SubjectIDName(sid.String())
	if err != nil {
		return nil, err
	}
	names = append(names, sidName)
	if lp.purpose == uzi.PurposeAuthentication {
		upn, err := uzi.UPNName(c.UZI + "@" + c.URA)
		if err != nil {
			return nil, err
		}
		names = append(names, upn)
	}
	if c.Type == uzi.CardS {
		pi, err := uzi.PermanentIdentifierName(c.URA, uzi.OIDURA)
		if err != nil {
			return nil, err
		}
		names = append(names, pi)
	}
	san, err := uzi.MarshalSubjectAltName(names...)
	if err != nil {
		return nil, err
	}
	policy, err := x509.ParseOID(uzi.PolicyFor(c.Type, lp.purpose))
	if err != nil {
		return nil, err
	}
	nb, na := b.now.Add(-30*24*time.Hour), b.now.Add(-30*24*time.Hour+cardValidity)
	if !lp.notBefore.IsZero() {
		nb, na = lp.notBefore, lp.notAfter
	}
	ku := lp.purpose.KeyUsage()
	if lp.keyUsage != 0 {
		ku = lp.keyUsage
	}
	b.meta[lp.name] = certMeta{typ: c.Type, purpose: lp.purpose, uzi: c.UZI, ura: c.URA, role: c.Role}
	tmpl := &x509.Certificate{
		RawSubject: subject, NotBefore: nb, NotAfter: na, KeyUsage: ku, BasicConstraintsValid: true,
		Policies:              []x509.OID{policy},
		CRLDistributionPoints: []string{cdpBase + parentCRLName(lp.ca) + ".crl"},
		IssuingCertificateURL: []string{aiaBase + strings.ReplaceAll(lp.ca.Cert.Subject.CommonName, " ", "_") + ".cer"},
		ExtraExtensions:       []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
	}
	docSigning, efs := uzi.MustOID(uzi.OIDEKUDocumentSigning), uzi.MustOID(uzi.OIDEKUEFS)
	switch lp.purpose {
	case uzi.PurposeAuthentication:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{docSigning}
	case uzi.PurposeNonRepudiation:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{docSigning}
		qc, err := qcStatements()
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, qc)
	case uzi.PurposeEncryption:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{efs}
	case uzi.PurposeServer:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return tmpl, nil
}

// qcStatements returns the ETSI statements of a UZI HND certificate: QcCompliance, QcSSCD,
// QcType esign and QcPDS.
func qcStatements() (pkix.Extension, error) {
	type statement struct {
		ID   asn1.ObjectIdentifier
		Info asn1.RawValue `asn1:"optional"`
	}
	type pdsLocation struct {
		URL      string `asn1:"ia5"`
		Language string `asn1:"printable"`
	}
	qcType, err := asn1.Marshal([]asn1.ObjectIdentifier{uzi.MustOID(uzi.OIDQcTypeESign)})
	if err != nil {
		return pkix.Extension{}, err
	}
	pds, err := asn1.Marshal([]pdsLocation{{URL: pdsURL, Language: "en"}})
	if err != nil {
		return pkix.Extension{}, err
	}
	val, err := asn1.Marshal([]statement{
		{ID: uzi.MustOID(uzi.OIDQcCompliance)},
		{ID: uzi.MustOID(uzi.OIDQcSSCD)},
		{ID: uzi.MustOID(uzi.OIDQcType), Info: asn1.RawValue{FullBytes: qcType}},
		{ID: uzi.MustOID(uzi.OIDQcPDS), Info: asn1.RawValue{FullBytes: pds}},
	})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: uzi.MustOID(uzi.OIDQCStatements), Value: val}, nil
}

// ---- servers ----

func (b *builder) buildServers() error {
	type spec struct {
		name, org, cn string
		dns           []string
		ips           []net.IP
		id            byte // CKA_ID in the "hsm" token; 0 = software key even in SoftHSM mode
	}
	lo := []net.IP{net.ParseIP("127.0.0.1")}
	specs := []spec{
		{ServerGateway, "A", "aortagw.test", []string{"aortagw.test"}, nil, 0x10},
		{ServerLSP, "LSP", "localhost", []string{"localhost"}, lo, 0},
		{ServerSBVZ, "SBVZ", "localhost", []string{"localhost"}, lo, 0},
		{ServerOtherOrg, "B", "xis.ziekenhuis-zuid.test", []string{"xis.ziekenhuis-zuid.test"}, nil, 0x11},
	}
	var hsmCard *Card
	if b.hsm != nil {
		hsmCard = &Card{Name: HSMToken}
		if err := b.hsm.initToken(hsmCard); err != nil {
			return err
		}
	}
	for _, s := range specs {
		org := b.p.Org(s.org)
		holder := &Card{Name: s.name, Type: uzi.CardS, UZI: b.number("9", 9), URA: org.URA, Role: "00.000", AGB: "00000000", Org: s.org}
		lp := leafParams{name: "server/" + s.name, card: holder, purpose: uzi.PurposeServer, ca: b.p.CAs[CAServer],
			org: org, dns: s.dns, ips: s.ips, cn: s.cn}
		var c *Cert
		var err error
		if b.hsm != nil && s.id != 0 {
			c, err = b.hsmLeaf(lp, hsmCard.TokenLabel, hsmCard.PINFile, []byte{s.id}, false)
		} else {
			c, err = b.softLeaf(lp)
		}
		if err != nil {
			return err
		}
		b.p.Servers[s.name] = c
	}
	b.p.Server = b.p.Servers[ServerGateway]
	return nil
}

// ---- edge cases ----

func (b *builder) edgeCard(name string) *Card {
	org := b.p.Org("A")
	g, s := b.person()
	return &Card{Name: name, Type: uzi.CardZ, UZI: b.number("9", 9), URA: org.URA, Role: "01.015",
		RoleName: "Huisarts", AGB: "00000000", Org: "A", Person: g + " " + s}
}

func (b *builder) buildEdge() error {
	e := &b.p.Edge
	org := b.p.Org("A")
	zca := b.p.CAs[CAZorgverlener]
	leaf := func(name string, c *Card, pu uzi.KeyPurpose, mod func(*leafParams)) (*Cert, error) {
		g, s, _ := strings.Cut(c.Person, " ")
		lp := leafParams{name: "edge/" + name, card: c, given: g, surname: s, purpose: pu, ca: zca, org: org}
		if mod != nil {
			mod(&lp)
		}
		return b.softLeaf(lp)
	}
	var err error
	if e.Expired, err = leaf("expired", b.edgeCard("expired"), uzi.PurposeAuthentication, func(lp *leafParams) {
		lp.notBefore, lp.notAfter = b.now.Add(-cardValidity-10*24*time.Hour), b.now.Add(-10*24*time.Hour)
	}); err != nil {
		return err
	}
	if e.NotYetValid, err = leaf("not-yet-valid", b.edgeCard("not-yet-valid"), uzi.PurposeAuthentication, func(lp *leafParams) {
		lp.notBefore, lp.notAfter = b.now.Add(10*24*time.Hour), b.now.Add(10*24*time.Hour+cardValidity)
	}); err != nil {
		return err
	}
	revokedHolder := b.edgeCard("revoked")
	if e.Revoked, err = leaf("revoked", revokedHolder, uzi.PurposeAuthentication, nil); err != nil {
		return err
	}
	if e.RevokedSign, err = leaf("revoked-sign", revokedHolder, uzi.PurposeNonRepudiation, nil); err != nil {
		return err
	}
	e.RevokedAt = b.now.Add(-7 * 24 * time.Hour)
	e.SigningMoment = b.now.Add(-3 * 24 * time.Hour)
	e.RevokedAfterSigningAt = b.now.Add(-24 * time.Hour)
	if e.RevokedAfterSigning, err = leaf("revoked-after-signing", b.edgeCard("revoked-after-signing"), uzi.PurposeAuthentication, nil); err != nil {
		return err
	}
	b.revoke(CAZorgverlener, e.Revoked.Cert, e.RevokedAt, 1) // keyCompromise
	b.revoke(CAZorgverlener, e.RevokedSign.Cert, e.RevokedAt, 1)
	b.revoke(CAZorgverlener, e.RevokedAfterSigning.Cert, e.RevokedAfterSigningAt, 4) // superseded
	if e.WrongUsageAuth, err = leaf("wrong-usage-auth", b.edgeCard("wrong-usage-auth"), uzi.PurposeAuthentication, func(lp *leafParams) {
		lp.keyUsage = x509.KeyUsageContentCommitment
	}); err != nil {
		return err
	}
	if e.WrongUsageSign, err = leaf("wrong-usage-sign", b.edgeCard("wrong-usage-sign"), uzi.PurposeNonRepudiation, func(lp *leafParams) {
		lp.keyUsage = x509.KeyUsageDigitalSignature
	}); err != nil {
		return err
	}
	return b.buildAttacker()
}

// buildAttacker copies the real names into a chain under the attacker's own keys and issues a
// Z AUT for the first card's holder.
func (b *builder) buildAttacker() error {
	e := &b.p.Edge
	rootKey, err := b.keys.get()
	if err != nil {
		return err
	}
	rt := &x509.Certificate{RawSubject: b.p.Root.Cert.RawSubject, NotBefore: b.p.Root.Cert.NotBefore,
		NotAfter: b.p.Root.Cert.NotAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if e.AttackerRoot, err = b.issue("edge/attacker-root", rt, nil, &rootKey.PublicKey, rootKey); err != nil {
		return err
	}
	caKey, err := b.keys.get()
	if err != nil {
		return err
	}
	real := b.p.CAs[CAZorgverlener].Cert
	ct := &x509.Certificate{RawSubject: real.RawSubject, NotBefore: real.NotBefore, NotAfter: real.NotAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if e.AttackerCA, err = b.issue("edge/attacker-ca", ct, e.AttackerRoot, &caKey.PublicKey, caKey); err != nil {
		return err
	}
	victim := b.p.Cards[0]
	given, sur, _ := strings.Cut(victim.Person, " ")
	holder := *victim
	lp := leafParams{name: "edge/attacker-card", card: &holder, given: given, surname: sur,
		purpose: uzi.PurposeAuthentication, ca: e.AttackerCA, org: b.p.Org(victim.Org)}
	e.AttackerCard, err = b.softLeaf(lp)
	return err
}

// ---- CRLs ----

func (b *builder) revoke(ca string, c *x509.Certificate, at time.Time, reason int) {
	b.revoked[ca] = append(b.revoked[ca], x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: at, ReasonCode: reason})
}

func (b *builder) crl(ca string, this, next time.Time, number int64) (*x509.RevocationList, error) {
	issuer := b.caCert(ca)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next,
		RevokedCertificateEntries: b.revoked[ca], SignatureAlgorithm: x509.SHA256WithRSA,
	}, issuer.Cert, issuer.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: crl %s: %w", ca, err)
	}
	return x509.ParseRevocationList(der)
}

func (b *builder) caCert(name string) *Cert {
	switch name {
	case CARoot:
		return b.p.Root
	case CAOrganisatiePersoon:
		return b.p.Intermediate
	case CAServerRoot:
		return b.p.ServerRoot
	case CAServerServices:
		return b.p.ServerIntermediate
	}
	return b.p.CAs[name]
}

func (b *builder) buildCRLs() error {
	number := b.now.Unix()
	for _, ca := range caOrder {
		l, err := b.crl(ca, b.now, b.now.Add(crlNextUpdate), number)
		if err != nil {
			return err
		}
		b.p.CRLs[ca] = l
	}
	stale, err := b.crl(CAZorgverlener, b.now.Add(-96*time.Hour), b.now.Add(-48*time.Hour), number-1)
	if err != nil {
		return err
	}
	b.p.Edge.StaleCRL = stale
	return nil
}
