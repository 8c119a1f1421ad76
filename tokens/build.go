package tokens

import (
	"time"

	"github.com/beevik/etree"
)

// The builders below turn typed claims into an etree element laid out exactly
// as docs/tokens.md shows: saml prefix declared once on the Assertion,
// attributes in canonical order, the ds:KeyInfo of SubjectConfirmationData
// in the default-namespace form of the VZVZ sample. The Signature is inserted
// after Issuer by the signing recipe.

func fmtTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

func newAssertion(id string, issueInstant time.Time, issuer string) (*etree.Element, *etree.Element) {
	a := etree.NewElement("saml:Assertion")
	a.CreateAttr("xmlns:saml", NSSAML)
	a.CreateAttr("ID", id)
	a.CreateAttr("IssueInstant", fmtTime(issueInstant))
	a.CreateAttr("Version", "2.0")
	iss := a.CreateElement("saml:Issuer")
	iss.CreateAttr("Format", FormatEntity)
	iss.SetText(issuer)
	return a, iss
}

// keyInfoIssuerSerial appends <KeyInfo xmlns="ds"><X509Data><X509IssuerSerial>..</..></..></..>.
func keyInfoIssuerSerial(parent *etree.Element, issuerName, serial string) {
	ki := parent.CreateElement("KeyInfo")
	ki.CreateAttr("xmlns", NSDSig)
	is := ki.CreateElement("X509Data").CreateElement("X509IssuerSerial")
	is.CreateElement("X509IssuerName").SetText(issuerName)
	is.CreateElement("X509SerialNumber").SetText(serial)
}

func conditions(a *etree.Element, nb, noa time.Time, audiences []string) {
	c := a.CreateElement("saml:Conditions")
	c.CreateAttr("NotBefore", fmtTime(nb))
	c.CreateAttr("NotOnOrAfter", fmtTime(noa))
	ar := c.CreateElement("saml:AudienceRestriction")
	for _, au := range audiences {
		ar.CreateElement("saml:Audience").SetText(au)
	}
}

func authnStatement(a *etree.Element, instant time.Time, class string) {
	s := a.CreateElement("saml:AuthnStatement")
	s.CreateAttr("AuthnInstant", fmtTime(instant))
	s.CreateElement("saml:AuthnContext").CreateElement("saml:AuthnContextClassRef").SetText(class)
}

func attribute(st *etree.Element, name string, withFormat bool, values ...string) {
	at := st.CreateElement("saml:Attribute")
	at.CreateAttr("Name", name)
	if withFormat {
		at.CreateAttr("NameFormat", AttrNameFormat)
	}
	for _, v := range values {
		at.CreateElement("saml:AttributeValue").SetText(v)
	}
}

// buildEnrolment lays out an inschrijftoken (INS v8.x).
func buildEnrolment(e *Enrolment, issuerName, serial string) *etree.Element {
	a, _ := newAssertion(e.ID, e.IssueInstant, URAPrefix+e.URA)
	sub := a.CreateElement("saml:Subject")
	sub.CreateElement("saml:NameID").SetText(e.BSN)
	sc := sub.CreateElement("saml:SubjectConfirmation")
	sc.CreateAttr("Method", MethodSenderVouches)
	keyInfoIssuerSerial(sc.CreateElement("saml:SubjectConfirmationData"), issuerName, serial)
	conditions(a, e.NotBefore, e.NotOnOrAfter, e.Audiences)
	authnStatement(a, e.AuthnInstant, ClassSmartcardPKI)
	attribute(a.CreateElement("saml:AttributeStatement"), attrUitvoerder, false, e.Uitvoerder)
	return a
}

// buildMandate lays out a mandaattoken ([P] layout, aorta-uzi.md section 4).
func buildMandate(m *Mandate) *etree.Element {
	a, _ := newAssertion(m.ID, m.IssueInstant, UZIPrefix+m.GiverUZI)
	sub := a.CreateElement("saml:Subject")
	sub.CreateElement("saml:NameID").SetText(URAPrefix + m.URA)
	sub.CreateElement("saml:SubjectConfirmation").CreateAttr("Method", MethodSenderVouches)
	conditions(a, m.NotBefore, m.NotOnOrAfter, m.Audiences)
	authnStatement(a, m.IssueInstant, ClassSmartcardPKI)
	st := a.CreateElement("saml:AttributeStatement")
	attribute(st, attrContext, true, m.Context)
	attribute(st, attrMandaatgever, true, m.GiverUZI+":"+m.GiverRole)
	if len(m.Mandated) > 0 {
		attribute(st, attrGemandateerde, true, m.Mandated...)
	}
	if m.ApplicationID != "" {
		attribute(st, attrApplicationID, true, m.ApplicationID)
	}
	return a
}

// buildTransaction lays out a transactietoken exactly like the VZVZ sample (Token2_A).
func buildTransaction(t *Transaction, issuerName, serial string) *etree.Element {
	a, _ := newAssertion(t.ID, t.IssueInstant, URAPrefix+t.URA)
	sub := a.CreateElement("saml:Subject")
	nid := sub.CreateElement("saml:NameID")
	nid.CreateAttr("Format", FormatEntity)
	nid.SetText(t.NameID)
	sc := sub.CreateElement("saml:SubjectConfirmation")
	sc.CreateAttr("Method", MethodHolderOfKey)
	keyInfoIssuerSerial(sc.CreateElement("saml:SubjectConfirmationData"), issuerName, serial)
	conditions(a, t.NotBefore, t.NotOnOrAfter, t.Audiences)
	authnStatement(a, t.IssueInstant, ClassSmartcardPKI)
	st := a.CreateElement("saml:AttributeStatement")
	opt := func(name, v string) {
		if v != "" {
			attribute(st, name, true, v)
		}
	}
	opt(attrContext, t.Context)
	opt(attrInteractionID, t.InteractionID)
	opt(attrMessageIDRoot, t.MessageIDRoot)
	opt(attrMessageIDExt, t.MessageIDExt)
	opt(attrBSN, t.BSN)
	opt(attrApplicationID, t.ApplicationID)
	opt(attrContextCodeSys, t.ContextCodeSystem)
	opt(attrContextCode, t.ContextCode)
	return a
}
