package tokens

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/aortagw/aortagw/internal/uzi"
)

func errorsIsReplay(err error) bool { return errors.Is(err, ErrReplay) }

// leafText returns the text of an element that must not have element children.
func leafText(el *etree.Element) (string, error) {
	if len(el.ChildElements()) != 0 {
		return "", reject(ErrStructure, "%s must hold text only", el.Tag)
	}
	return textOf(el), nil
}

func samlAttrsOnly(el *etree.Element, allowed ...string) error {
	for _, a := range el.Attr {
		if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
			continue
		}
		ok := false
		for _, n := range allowed {
			ok = ok || (a.Space == "" && a.Key == n)
		}
		if !ok {
			return reject(ErrStructure, "attribute %s on %s not allowed", a.FullKey(), el.Tag)
		}
	}
	return nil
}

type parsedAssertion struct {
	version, id, issuer, issuerFormat string
	issueInstant                      time.Time
	nameID                            string
	nameIDFormat                      string
	method                            string
	hokIssuer                         string
	hokSerial                         string
	hasConfData                       bool
	notBefore, notOnOrAfter           time.Time
	audiences                         []string
	authnInstant                      time.Time
	authnClass                        string
	attrs                             map[string][]string
	attrOrder                         []string
}

// parseVerified reads the verified assertion strictly in schema order:
// Issuer, Subject, Conditions, AuthnStatement, AttributeStatement (optional).
func parseVerified(a *etree.Element) (*parsedAssertion, error) {
	p := &parsedAssertion{attrs: map[string][]string{}}
	if !isEl(a, NSSAML, "Assertion") {
		return nil, reject(ErrStructure, "not an assertion")
	}
	if err := samlAttrsOnly(a, "ID", "IssueInstant", "Version"); err != nil {
		return nil, err
	}
	p.version = a.SelectAttrValue("Version", "")
	p.id = a.SelectAttrValue("ID", "")
	var err error
	if p.issueInstant, err = parseTime(a.SelectAttrValue("IssueInstant", "")); err != nil {
		return nil, reject(ErrIssueInstant, "%v", err)
	}
	if !onlyWhitespaceText(a) {
		return nil, reject(ErrStructure, "text in assertion")
	}
	kids := a.ChildElements()
	want := []string{"Issuer", "Subject", "Conditions", "AuthnStatement", "AttributeStatement"}
	if len(kids) < 4 || len(kids) > 5 {
		return nil, reject(ErrStructure, "assertion children=%d", len(kids))
	}
	for i, k := range kids {
		if !isEl(k, NSSAML, want[i]) {
			return nil, reject(ErrStructure, "unexpected %s at position %d", k.Tag, i)
		}
	}
	// Issuer
	if err := samlAttrsOnly(kids[0], "Format"); err != nil {
		return nil, err
	}
	p.issuerFormat = kids[0].SelectAttrValue("Format", "")
	if p.issuer, err = leafText(kids[0]); err != nil {
		return nil, err
	}
	// Subject
	sub := kids[1].ChildElements()
	if len(sub) != 2 || !isEl(sub[0], NSSAML, "NameID") || !isEl(sub[1], NSSAML, "SubjectConfirmation") {
		return nil, reject(ErrStructure, "subject must be nameid + one subjectconfirmation")
	}
	if err := samlAttrsOnly(sub[0], "Format"); err != nil {
		return nil, err
	}
	p.nameIDFormat = sub[0].SelectAttrValue("Format", "")
	if p.nameID, err = leafText(sub[0]); err != nil {
		return nil, err
	}
	if err := samlAttrsOnly(sub[1], "Method"); err != nil {
		return nil, err
	}
	p.method = sub[1].SelectAttrValue("Method", "")
	switch scd := sub[1].ChildElements(); len(scd) {
	case 0:
	case 1:
		if !isEl(scd[0], NSSAML, "SubjectConfirmationData") {
			return nil, reject(ErrStructure, "subjectconfirmation child %s", scd[0].Tag)
		}
		if err := samlAttrsOnly(scd[0]); err != nil {
			return nil, err
		}
		p.hasConfData = true
		ki := scd[0].ChildElements()
		if len(ki) != 1 || !isEl(ki[0], NSDSig, "KeyInfo") {
			return nil, reject(ErrHolderOfKey, "subjectconfirmationdata must hold one ds:keyinfo")
		}
		xd := ki[0].ChildElements()
		if len(xd) != 1 || !isEl(xd[0], NSDSig, "X509Data") {
			return nil, reject(ErrHolderOfKey, "keyinfo must hold one x509data")
		}
		is := xd[0].ChildElements()
		if len(is) != 1 || !isEl(is[0], NSDSig, "X509IssuerSerial") {
			return nil, reject(ErrHolderOfKey, "x509data must hold one x509issuerserial")
		}
		name, serial, err := readIssuerSerial(is[0])
		if err != nil {
			return nil, reject(ErrHolderOfKey, "%v", err)
		}
		p.hokIssuer, p.hokSerial = name, serial.String()
	default:
		return nil, reject(ErrStructure, "several subjectconfirmationdata")
	}
	// Conditions: NotBefore, NotOnOrAfter, one or more AudienceRestriction only.
	if err := samlAttrsOnly(kids[2], "NotBefore", "NotOnOrAfter"); err != nil {
		return nil, err
	}
	if p.notBefore, err = parseTime(kids[2].SelectAttrValue("NotBefore", "")); err != nil {
		return nil, reject(ErrStructure, "notbefore: %v", err)
	}
	if p.notOnOrAfter, err = parseTime(kids[2].SelectAttrValue("NotOnOrAfter", "")); err != nil {
		return nil, reject(ErrStructure, "notonorafter: %v", err)
	}
	for _, ar := range kids[2].ChildElements() {
		if !isEl(ar, NSSAML, "AudienceRestriction") {
			return nil, reject(ErrStructure, "condition %s not allowed", ar.Tag)
		}
		for _, au := range ar.ChildElements() {
			if !isEl(au, NSSAML, "Audience") {
				return nil, reject(ErrStructure, "audiencerestriction child %s", au.Tag)
			}
			t, err := leafText(au)
			if err != nil {
				return nil, err
			}
			p.audiences = append(p.audiences, t)
		}
	}
	// AuthnStatement
	if err := samlAttrsOnly(kids[3], "AuthnInstant", "SessionIndex"); err != nil {
		return nil, err
	}
	if p.authnInstant, err = parseTime(kids[3].SelectAttrValue("AuthnInstant", "")); err != nil {
		return nil, reject(ErrStructure, "authninstant: %v", err)
	}
	ac := kids[3].ChildElements()
	if len(ac) != 1 || !isEl(ac[0], NSSAML, "AuthnContext") {
		return nil, reject(ErrStructure, "authnstatement layout")
	}
	cr := ac[0].ChildElements()
	if len(cr) != 1 || !isEl(cr[0], NSSAML, "AuthnContextClassRef") {
		return nil, reject(ErrStructure, "authncontext layout")
	}
	if p.authnClass, err = leafText(cr[0]); err != nil {
		return nil, err
	}
	// AttributeStatement
	if len(kids) == 5 {
		for _, at := range kids[4].ChildElements() {
			if !isEl(at, NSSAML, "Attribute") {
				return nil, reject(ErrAttribute, "%s in attributestatement", at.Tag)
			}
			if err := samlAttrsOnly(at, "Name", "NameFormat"); err != nil {
				return nil, reject(ErrAttribute, "%v", err)
			}
			name := at.SelectAttrValue("Name", "")
			if nf := at.SelectAttrValue("NameFormat", AttrNameFormat); nf != AttrNameFormat {
				return nil, reject(ErrAttribute, "nameformat=%q", nf)
			}
			if _, dup := p.attrs[name]; dup || name == "" {
				return nil, reject(ErrAttribute, "attribute %q repeated or unnamed", name)
			}
			vals := []string{}
			for _, av := range at.ChildElements() {
				if !isEl(av, NSSAML, "AttributeValue") {
					return nil, reject(ErrAttribute, "%s in attribute", av.Tag)
				}
				if err := samlAttrsOnly(av); err != nil {
					return nil, reject(ErrAttribute, "attributevalue attributes (xsi:type not allowed)")
				}
				t, err := leafText(av)
				if err != nil {
					return nil, reject(ErrAttribute, "%v", err)
				}
				vals = append(vals, t)
			}
			if len(vals) == 0 || (len(vals) > 1 && name != attrGemandateerde) {
				return nil, reject(ErrAttribute, "attribute %q must have exactly one value (values=%d)", name, len(vals))
			}
			p.attrs[name] = vals
			p.attrOrder = append(p.attrOrder, name)
		}
	}
	return p, nil
}

func (p *parsedAssertion) one(name string) string {
	if v := p.attrs[name]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// readAndCheck applies the SAML semantics of security.md section 7 point 6 to
// the verified element and fills out.
func (v *Validator) readAndCheck(root *etree.Element, out *Verified, want Type, now time.Time) error {
	p, err := parseVerified(root)
	if err != nil {
		return err
	}
	typ, err := detectType(root)
	if err != nil {
		return err
	}
	if typ != out.Type || (want != 0 && typ != want) || p.id != out.ID {
		return reject(ErrWrongType, "verified content differs in type or id")
	}
	id, leaf := out.Signer, out.SignerCert
	skew := v.cfg.Skew
	switch {
	case p.version != "2.0":
		return reject(ErrVersion, "version=%q", p.version)
	case p.issueInstant.After(now.Add(skew)):
		return reject(ErrIssueInstant, "issueinstant in the future")
	case p.issuerFormat != FormatEntity:
		return reject(ErrIssuer, "issuer format=%q", p.issuerFormat)
	case !p.notOnOrAfter.After(p.notBefore):
		return reject(ErrLifetime, "notonorafter not after notbefore")
	case now.Add(skew).Before(p.notBefore):
		return reject(ErrNotYetValid, "not_before=%s", p.notBefore.Format(TimeFormat))
	case !now.Add(-skew).Before(p.notOnOrAfter):
		return reject(ErrExpired, "not_on_or_after=%s", p.notOnOrAfter.Format(TimeFormat))
	case p.authnInstant.After(p.issueInstant.Add(skew)):
		return reject(ErrIssueInstant, "authninstant after issueinstant")
	case p.authnClass != ClassSmartcardPKI:
		return reject(ErrStructure, "authncontextclassref=%q (uzi tokens use smartcardpki)", p.authnClass)
	}
	aud := false
	for _, a := range p.audiences {
		aud = aud || a == v.cfg.Audience
	}
	if !aud {
		return reject(ErrAudience, "audience=%q missing", v.cfg.Audience)
	}
	hokMatches := func() bool {
		return p.hasConfData && p.hokSerial == leaf.SerialNumber.String() && issuerNameMatches(p.hokIssuer, leaf.RawIssuer)
	}
	lifetime := p.notOnOrAfter.Sub(p.notBefore)
	out.Issuer = p.issuer
	switch typ {
	case TypeTransaction:
		if lifetime > v.cfg.MaxTransactionLifetime {
			return reject(ErrLifetime, "lifetime=%s max=%s", lifetime, v.cfg.MaxTransactionLifetime)
		}
		ura, ok := strings.CutPrefix(p.issuer, URAPrefix)
		if !ok && !v.cfg.RejectLegacyIssuer {
			ura, ok = strings.CutPrefix(p.issuer, URALegacyPrefix)
		}
		if !ok || ura != id.URA {
			return reject(ErrIssuer, "issuer=%q signer_ura=%s", p.issuer, id.URA)
		}
		if id.CardType == uzi.CardS {
			if p.nameID != "" {
				return reject(ErrNameID, "server-signed token must have an empty nameid")
			}
		} else if p.nameID != id.NameID() {
			return reject(ErrNameID, "nameid=%q signer=%s", p.nameID, id.NameID())
		}
		if p.method != MethodHolderOfKey || !hokMatches() {
			return reject(ErrHolderOfKey, "holder-of-key x509issuerserial is not the signer's")
		}
		t := &Transaction{ID: p.id, IssueInstant: p.issueInstant, NotBefore: p.notBefore, NotOnOrAfter: p.notOnOrAfter,
			URA: ura, NameID: p.nameID, BSN: p.one(attrBSN), InteractionID: p.one(attrInteractionID),
			MessageIDRoot: p.one(attrMessageIDRoot), MessageIDExt: p.one(attrMessageIDExt),
			ApplicationID: p.one(attrApplicationID), Context: p.one(attrContext),
			ContextCodeSystem: p.one(attrContextCodeSys), ContextCode: p.one(attrContextCode), Audiences: p.audiences}
		if t.InteractionID == "" || t.MessageIDRoot == "" || t.MessageIDExt == "" {
			return reject(ErrAttribute, "interactionid, messageidroot and messageidext are required")
		}
		if len(p.attrs[attrGemandateerde]) > 0 {
			return reject(ErrAttribute, "gemandateerde not allowed in a transaction token")
		}
		if t.BSN != "" && !uzi.ValidBSN(t.BSN) {
			return reject(ErrAttribute, "burgerservicenummer fails the eleven-test")
		}
		out.Transaction = t
	case TypeEnrolment:
		if lifetime > v.cfg.MaxEnrolmentLifetime {
			return reject(ErrLifetime, "lifetime=%s max=%s", lifetime, v.cfg.MaxEnrolmentLifetime)
		}
		if p.notBefore.Before(leaf.NotBefore) {
			return reject(ErrLifetime, "notbefore before the signing certificate's notbefore")
		}
		ura, ok := strings.CutPrefix(p.issuer, URAPrefix)
		if !ok || ura != id.URA {
			return reject(ErrIssuer, "issuer=%q signer_ura=%s", p.issuer, id.URA)
		}
		if p.nameIDFormat != "" && p.nameIDFormat != "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified" {
			return reject(ErrNameID, "nameid format=%q", p.nameIDFormat)
		}
		if !uzi.ValidBSN(p.nameID) {
			return reject(ErrNameID, "nameid is not a valid bsn")
		}
		if p.method != MethodSenderVouches || !hokMatches() {
			return reject(ErrHolderOfKey, "subjectconfirmationdata x509issuerserial is not the signer's")
		}
		for _, n := range p.attrOrder {
			if n != attrUitvoerder {
				return reject(ErrAttribute, "attribute %q not allowed in an enrolment token", n)
			}
		}
		if u := p.one(attrUitvoerder); u != "" && u != id.UZI {
			return reject(ErrUitvoerder, "uitvoerder=%q signer=%s", u, id.UZI)
		}
		out.Enrolment = &Enrolment{ID: p.id, IssueInstant: p.issueInstant, NotBefore: p.notBefore, NotOnOrAfter: p.notOnOrAfter,
			AuthnInstant: p.authnInstant, URA: ura, BSN: p.nameID, Uitvoerder: p.one(attrUitvoerder), Audiences: p.audiences}
	case TypeMandate:
		if lifetime > v.cfg.MaxMandateLifetime {
			return reject(ErrLifetime, "lifetime=%s max=%s", lifetime, v.cfg.MaxMandateLifetime)
		}
		if p.notOnOrAfter.After(leaf.NotAfter) {
			return reject(ErrLifetime, "mandate outlives the signing certificate")
		}
		if p.issuer != UZIPrefix+id.UZI {
			return reject(ErrIssuer, "issuer=%q signer_uzi=%s", p.issuer, id.UZI)
		}
		ura, ok := strings.CutPrefix(p.nameID, URAPrefix)
		if !ok || !reURA.MatchString(ura) {
			return reject(ErrNameID, "mandate nameid must be %s<ura>", URAPrefix)
		}
		if p.method != MethodSenderVouches || (p.hasConfData && !hokMatches()) {
			return reject(ErrHolderOfKey, "subjectconfirmation")
		}
		allowed := map[string]bool{attrContext: true, attrMandaatgever: true, attrGemandateerde: true, attrApplicationID: true}
		for _, n := range p.attrOrder {
			if !allowed[n] {
				return reject(ErrAttribute, "attribute %q not allowed in a mandate token", n)
			}
		}
		giver := p.one(attrMandaatgever)
		if giver != id.NameID() {
			return reject(ErrNameID, "mandaatgever=%q signer=%s", giver, id.NameID())
		}
		ctxv := p.one(attrContext)
		if ctxv == "" {
			return reject(ErrAttribute, "autorisatieregel/context required")
		}
		out.Mandate = &Mandate{ID: p.id, IssueInstant: p.issueInstant, NotBefore: p.notBefore, NotOnOrAfter: p.notOnOrAfter,
			URA: ura, GiverUZI: id.UZI, GiverRole: id.Role, Mandated: p.attrs[attrGemandateerde],
			ApplicationID: p.one(attrApplicationID), Context: ctxv, Audiences: p.audiences}
	default:
		return fmt.Errorf("%w: %v", ErrUnsupportedType, typ)
	}
	return nil
}
