package tokens

import (
	"context"
	"strings"

	"github.com/beevik/etree"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// Bundle holds the raw tokens that travel together with one message. Mandate
// and Enrolment may be nil when the transaction token is signed by a caregiver
// and no mandate is used; a server-signed transaction token needs both.
type Bundle struct {
	Enrolment, Mandate, Transaction []byte
}

// Binding holds what the tokens must match, taken from the HL7 message and the
// connection (aorta-uzi.md section 7).
type Binding struct {
	URA           string // zorgaanbieder (authorOrPerformer Organization id) in the message
	BSN           string // patient BSN in the message, "" when the message has none
	InteractionID string
	MessageIDRoot string
	MessageIDExt  string
	// AuthorNameID is "<UZI>:<role>" of authorOrPerformer in the message.
	AuthorNameID string
	// OverseerNameID is "<UZI>:<role>" of the overseer (RESP), "" when absent.
	OverseerNameID string
	// PeerURA is the URA of the mTLS client certificate, "" when not known.
	PeerURA string
}

// BundleResult holds the verified tokens of a bundle.
type BundleResult struct {
	Enrolment, Mandate, Transaction *Verified
}

// VerifyBundle verifies each token and the value binding between the tokens
// and with the message. Rules, each with its own sentinel (Code):
//   - the transaction token is required; server-signed (conditional query)
//     needs a mandate and an enrolment token (ErrMissingToken);
//   - URA equal in transaction, enrolment, mandate and message (ErrBindingURA);
//     mTLS peer URA equal too when given (ErrBindingPeer);
//   - BSN rule of section 7 point 10 between transaction token and message,
//     and the enrolment's BSN equal to the transaction's (ErrBindingBSN);
//   - autorisatieregel/context identical in mandate and transaction (ErrBindingContext);
//   - interactionId and messageIdRoot/Ext equal to the message (ErrBindingInteraction,
//     ErrBindingMessageID);
//   - caregiver-signed: NameID equals the message author (ErrBindingAuthor);
//     server-signed: the author (UZI or UZI:role) or the transaction's
//     applicationID is among the mandate's gemandateerden, and an overseer in
//     the message is the mandaatgever (ErrBindingMandate).
//
// The transaction token ID is recorded in the replay cache only after every
// rule passed.
func (v *Validator) VerifyBundle(ctx context.Context, b Bundle, m Binding) (*BundleResult, error) {
	if len(b.Transaction) == 0 {
		return nil, reject(ErrMissingToken, "transaction token")
	}
	parse := func(raw []byte) (*etree.Element, error) {
		doc, err := xmlsafe.Parse(raw, xmlsafe.TokenLimits)
		if err != nil {
			return nil, &rejectError{kind: ErrMalformed, err: err, msg: err.Error()}
		}
		if !isEl(doc.Root(), NSSAML, "Assertion") {
			return nil, reject(ErrTokenCount, "root is not a saml assertion")
		}
		if err := documentRules(doc.Root(), 1); err != nil {
			return nil, err
		}
		return doc.Root(), nil
	}
	var els [3]*etree.Element
	var pre [2]*Verified // cache hits for enrolment and mandate
	var keys [2][32]byte
	gen := v.generation()
	for i, raw := range [][]byte{b.Enrolment, b.Mandate, b.Transaction} {
		if len(raw) == 0 {
			continue
		}
		if i < 2 && v.vcache != nil {
			keys[i] = tokenKey(raw)
			if pre[i] = v.cachedVerify(keys[i], [2]Type{TypeEnrolment, TypeMandate}[i]); pre[i] != nil {
				continue
			}
		}
		el, err := parse(raw)
		if err != nil {
			return nil, err
		}
		els[i] = el
	}
	res, err := v.verifyTokens(ctx, els[0], els[1], els[2], pre[0], pre[1], m)
	if err != nil {
		return nil, err
	}
	// Remember enrolment and mandate tokens that were verified in full here.
	if v.vcache != nil {
		if pre[0] == nil && res.Enrolment != nil {
			v.remember(keys[0], gen, res.Enrolment)
		}
		if pre[1] == nil && res.Mandate != nil {
			v.remember(keys[1], gen, res.Mandate)
		}
	}
	return res, nil
}

// VerifyEnvelope applies the WS-Security header rules to a SOAP 1.1 envelope
// (exactly one wsse:Security with soap:actor zim and mustUnderstand="1" in
// soap:Header holding exactly the three assertions — one of each type — and no
// other saml:Assertion anywhere, no duplicate IDs) and then VerifyBundle's rules.
func (v *Validator) VerifyEnvelope(ctx context.Context, envelope []byte, m Binding) (*BundleResult, error) {
	as, err := securityAssertions(envelope)
	if err != nil {
		return nil, err
	}
	if len(as) != 3 {
		return nil, reject(ErrTokenCount, "security header holds %d assertions, want 3", len(as))
	}
	var byType [4]*etree.Element
	for _, a := range as {
		t, err := detectType(a)
		if err != nil {
			return nil, err
		}
		if byType[t] != nil {
			return nil, reject(ErrTokenCount, "two %s tokens", t)
		}
		byType[t] = a
	}
	return v.verifyElements(ctx, byType[TypeEnrolment], byType[TypeMandate], byType[TypeTransaction], m)
}

// VerifyInEnvelope verifies the single token of type want inside an envelope,
// after the same WS-Security header rules as VerifyEnvelope (1 to 3 tokens
// allowed, at most one per type). Transaction IDs go to the replay cache.
func (v *Validator) VerifyInEnvelope(ctx context.Context, envelope []byte, want Type) (*Verified, error) {
	as, err := securityAssertions(envelope)
	if err != nil {
		return nil, err
	}
	var found *etree.Element
	seen := map[Type]bool{}
	for _, a := range as {
		t, err := detectType(a)
		if err != nil {
			return nil, err
		}
		if seen[t] {
			return nil, reject(ErrTokenCount, "two %s tokens", t)
		}
		seen[t] = true
		if t == want {
			found = a
		}
	}
	if found == nil {
		return nil, reject(ErrTokenCount, "no %s token in the security header", want)
	}
	return v.verifyAssertion(ctx, found, want, true)
}

// securityAssertions locates the assertions of the zim Security header.
func securityAssertions(envelope []byte) ([]*etree.Element, error) {
	doc, err := xmlsafe.Parse(envelope, xmlsafe.MessageLimits)
	if err != nil {
		return nil, &rejectError{kind: ErrMalformed, err: err, msg: err.Error()}
	}
	env := doc.Root()
	if !isEl(env, NSSOAP, "Envelope") {
		return nil, reject(ErrSecurityHeader, "not a soap 1.1 envelope")
	}
	var header *etree.Element
	for i, c := range env.ChildElements() {
		if isEl(c, NSSOAP, "Header") && i == 0 {
			header = c
		}
	}
	if header == nil {
		return nil, reject(ErrSecurityHeader, "no soap header")
	}
	var sec *etree.Element
	for _, h := range header.ChildElements() {
		if !isEl(h, NSWSSE, "Security") {
			continue
		}
		actor := soapAttr(h, "actor")
		if actor != ActorZIM {
			continue
		}
		if sec != nil {
			return nil, reject(ErrSecurityHeader, "two security headers for the zim actor")
		}
		sec = h
	}
	if sec == nil {
		return nil, reject(ErrSecurityHeader, "no wsse:security header for actor %s", ActorZIM)
	}
	if mu := soapAttr(sec, "mustUnderstand"); mu != "1" {
		return nil, reject(ErrSecurityHeader, "mustunderstand=%q", mu)
	}
	var as []*etree.Element
	for _, c := range sec.ChildElements() {
		if !isEl(c, NSSAML, "Assertion") {
			return nil, reject(ErrSecurityHeader, "unexpected %s in the security header", c.Tag)
		}
		as = append(as, c)
	}
	if err := documentRules(env, len(as)); err != nil {
		return nil, err
	}
	return as, nil
}

// soapAttr returns the value of a SOAP-namespaced attribute (any prefix bound to SOAP 1.1).
func soapAttr(el *etree.Element, local string) string {
	for _, a := range el.Attr {
		if a.Key == local && a.Space != "" && a.Space != "xmlns" && a.NamespaceURI() == NSSOAP {
			return a.Value
		}
	}
	return ""
}

func (v *Validator) verifyElements(ctx context.Context, enr, mdt, trx *etree.Element, m Binding) (*BundleResult, error) {
	return v.verifyTokens(ctx, enr, mdt, trx, nil, nil, m)
}

// verifyTokens is verifyElements where the enrolment and mandate may come
// already verified (preEnr, preMdt: verified-cache hits, their element nil).
func (v *Validator) verifyTokens(ctx context.Context, enr, mdt, trx *etree.Element, preEnr, preMdt *Verified, m Binding) (*BundleResult, error) {
	if trx == nil {
		return nil, reject(ErrMissingToken, "transaction token")
	}
	res := &BundleResult{}
	var err error
	// Transaction first without replay; replay only after all binding rules passed.
	if res.Transaction, err = v.verifyAssertion(ctx, trx, TypeTransaction, false); err != nil {
		return nil, err
	}
	t := res.Transaction.Transaction
	server := res.Transaction.Signer.CardType == uzi.CardS
	if server && ((enr == nil && preEnr == nil) || (mdt == nil && preMdt == nil)) {
		return nil, reject(ErrMissingToken, "a server-signed transaction token needs an enrolment and a mandate token")
	}
	res.Enrolment, res.Mandate = preEnr, preMdt
	if enr != nil {
		if res.Enrolment, err = v.verifyAssertion(ctx, enr, TypeEnrolment, false); err != nil {
			return nil, err
		}
	}
	if mdt != nil {
		if res.Mandate, err = v.verifyAssertion(ctx, mdt, TypeMandate, false); err != nil {
			return nil, err
		}
	}
	// URA
	if m.URA == "" || t.URA != m.URA {
		return nil, reject(ErrBindingURA, "token=%s message=%s", t.URA, m.URA)
	}
	if res.Enrolment != nil && res.Enrolment.Enrolment.URA != t.URA {
		return nil, reject(ErrBindingURA, "enrolment=%s transaction=%s", res.Enrolment.Enrolment.URA, t.URA)
	}
	if res.Mandate != nil && res.Mandate.Mandate.URA != t.URA {
		return nil, reject(ErrBindingURA, "mandate=%s transaction=%s", res.Mandate.Mandate.URA, t.URA)
	}
	if m.PeerURA != "" && m.PeerURA != t.URA {
		return nil, reject(ErrBindingPeer, "peer=%s token=%s", m.PeerURA, t.URA)
	}
	// BSN (section 7 point 10)
	switch {
	case t.BSN != "" && m.BSN != "" && t.BSN != m.BSN:
		return nil, reject(ErrBindingBSN, "token and message bsn differ")
	case t.BSN != "" && m.BSN == "":
		return nil, reject(ErrBindingBSN, "token has a bsn, the message has none")
	case t.BSN == "" && m.BSN != "":
		return nil, reject(ErrBindingBSN, "message has a bsn, the token has none")
	}
	if res.Enrolment != nil && res.Enrolment.Enrolment.BSN != t.BSN {
		return nil, reject(ErrBindingBSN, "enrolment and transaction bsn differ")
	}
	// Context
	if res.Mandate != nil && res.Mandate.Mandate.Context != t.Context {
		return nil, reject(ErrBindingContext, "mandate=%q transaction=%q", res.Mandate.Mandate.Context, t.Context)
	}
	// Message binding
	if m.InteractionID == "" || m.InteractionID != t.InteractionID {
		return nil, reject(ErrBindingInteraction, "token=%q message=%q", t.InteractionID, m.InteractionID)
	}
	if m.MessageIDRoot == "" || m.MessageIDRoot != t.MessageIDRoot || m.MessageIDExt != t.MessageIDExt {
		return nil, reject(ErrBindingMessageID, "token=%s/%s message=%s/%s", t.MessageIDRoot, t.MessageIDExt, m.MessageIDRoot, m.MessageIDExt)
	}
	// Author
	if !server {
		if m.AuthorNameID != t.NameID {
			return nil, reject(ErrBindingAuthor, "token=%q message=%q", t.NameID, m.AuthorNameID)
		}
	} else {
		md := res.Mandate.Mandate
		authorUZI, _, _ := strings.Cut(m.AuthorNameID, ":")
		covered := false
		for _, g := range md.Mandated {
			if (m.AuthorNameID != "" && (g == m.AuthorNameID || g == authorUZI)) || (t.ApplicationID != "" && g == t.ApplicationID) {
				covered = true
			}
		}
		if !covered {
			return nil, reject(ErrBindingMandate, "author %q not among the gemandateerden", m.AuthorNameID)
		}
		if m.OverseerNameID != "" && m.OverseerNameID != md.GiverUZI+":"+md.GiverRole {
			return nil, reject(ErrBindingMandate, "overseer %q is not the mandaatgever", m.OverseerNameID)
		}
	}
	if err := v.cfg.Replay.Use(ctx, res.Transaction.Issuer, res.Transaction.ID, t.NotOnOrAfter.Add(v.cfg.Skew)); err != nil {
		if errorsIsReplay(err) {
			return nil, err
		}
		return nil, &rejectError{kind: ErrReplayStore, err: err, msg: err.Error()}
	}
	return res, nil
}
