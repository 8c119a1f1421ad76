// Package hl7 reads the HL7v3 (NICTIZ Ed2005) fields that the gateway and
// the LSP need from an AORTA message, and builds query messages from fixed
// templates (aorta-uzi.md section 10).
//
// Contracts:
//   - Read and ReadScope are strict: xmlsafe pre-parse, one message element
//     in urn:hl7-org:v3, root local name == interactionId@extension, no
//     duplicated transmission-wrapper fields, identifiers only recognised
//     under their OID roots (a BSN under another root is not a BSN; it is
//     reported as PatientIDRoot/PatientIDExt with BSN ""), and a value under
//     a known root must be well-formed (9-digit BSN passing the eleven-test,
//     9-digit UZI number, 8-digit URA, "NN.NNN" role code) or the message is
//     refused.
//   - Reading never re-serialises and keeps no reference to the input.
//   - BuildQuery escapes every value; it validates its input the same way.
//
// Everything here is stateless and safe for concurrent use.
package hl7

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Europe/Amsterdam without system zoneinfo

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// OIDs and namespaces.
const (
	NS = "urn:hl7-org:v3"

	OIDInteraction = "2.16.840.1.113883.1.6"            // interactionId root
	OIDTrigger     = "2.16.840.1.113883.1.18"           // trigger event codes
	OIDApp         = "2.16.840.1.113883.2.4.6.6"        // AORTA application (device) ids; LSP = 1
	OIDBSN         = "2.16.840.1.113883.2.4.6.3"        // burgerservicenummer
	OIDUZI         = "2.16.528.1.1007.3.1"              // UZI number (person)
	OIDURA         = "2.16.528.1.1007.3.3"              // URA (UZI abonneenummer)
	OIDRole        = "2.16.840.1.113883.2.4.15.111"     // UZI role codes
	OIDOrgType     = "2.16.840.1.113883.2.4.15.1060"    // organisation type
	OIDProfile     = "2.16.840.1.113883.2.4.3.11.1"     // profileId root
	OIDContextCode = "2.16.840.1.113883.2.4.3.111.15.1" // query context codes

	// LSPApp is the application id of the LSP (ZIM) itself.
	LSPApp = "1"
)

// Errors returned by this package.
var (
	ErrMalformed           = errors.New("hl7: malformed message")
	ErrTooLarge            = errors.New("hl7: message too large")
	ErrNotHL7              = errors.New("hl7: not an hl7v3 message")
	ErrInteractionMismatch = errors.New("hl7: root element and interactionId disagree")
	ErrMissing             = errors.New("hl7: required field missing")
	ErrAmbiguous           = errors.New("hl7: field present more than once")
	ErrBadBSN              = errors.New("hl7: invalid bsn")
	ErrBadIdentifier       = errors.New("hl7: invalid identifier")
	ErrUnsupported         = errors.New("hl7: unsupported interaction")
)

// Message holds the fields of an HL7v3 message that AORTA routing,
// authorisation and token binding need.
type Message struct {
	InteractionID               string
	MessageIDRoot, MessageIDExt string
	CreationTime                time.Time // zero when absent
	CreationTimeRaw             string
	AcceptAckCode               string
	SenderApp, ReceiverApp      string // device ids under OIDApp

	// TriggerCode is ControlActProcess/code@code ("" when absent).
	TriggerCode string

	// Author is authorOrPerformer (AUT): an assigned person or, for a
	// system, a device.
	AuthorUZI, AuthorRole, AuthorURA, AuthorName string
	AuthorDevice                                 string // AssignedDevice id under OIDApp
	// Overseer is the RESP overseer (the mandating caregiver).
	OverseerUZI, OverseerRole, OverseerURA string

	// BSN is the patient BSN of queryByParameter ("" when the message has none).
	BSN string
	// PatientIDRoot/Ext is the raw patientId value (set also when not a BSN).
	PatientIDRoot, PatientIDExt string
	QueryIDRoot, QueryIDExt     string

	// Ack is the transmission acknowledgement (responses only).
	Ack *Ack
	// QueryResponseCode is queryAck/queryResponseCode@code (responses only).
	QueryResponseCode string
}

// Ack is an HL7v3 transmission-wrapper acknowledgement.
type Ack struct {
	TypeCode              string // AA, AE, AR (or CA, CE, CR)
	TargetRoot, TargetExt string
	Details               []AckDetail
}

// AckDetail is one acknowledgementDetail.
type AckDetail struct {
	TypeCode, Code, CodeSystem, Text string
}

// IsError reports whether the acknowledgement signals an error (AE/AR/CE/CR).
func (a *Ack) IsError() bool {
	if a == nil {
		return false
	}
	switch a.TypeCode {
	case "AE", "AR", "CE", "CR":
		return true
	}
	return false
}

// Read reads a standalone HL7v3 message (the element in soap:Body, which
// must declare its own namespaces).
func Read(body []byte) (*Message, error) { return ReadScope(body, nil, xmlsafe.Limits{}) }

// ReadScope reads body with the namespace declarations in scope (prefix ->
// URI, "" for the default), as returned by soap.Envelope.BodyNamespaces, so
// that a body whose prefixes are declared on the Envelope can be read.
// Zero limits take xmlsafe.MessageLimits.
func ReadScope(body []byte, scope map[string]string, l xmlsafe.Limits) (*Message, error) {
	root, err := parseTree(body, scope, l)
	if err != nil {
		return nil, err
	}
	return readMessage(root)
}

func readMessage(root *node) (*Message, error) {
	if root.space != NS {
		return nil, fmt.Errorf("%w (namespace=%q)", ErrNotHL7, root.space)
	}
	m := &Message{}
	iid, err := root.one("interactionId")
	if err != nil {
		return nil, err
	}
	if iid == nil {
		return nil, fmt.Errorf("%w (field=interactionId)", ErrMissing)
	}
	if iid.attr("root") != OIDInteraction {
		return nil, fmt.Errorf("%w: interactionId root (root=%s)", ErrBadIdentifier, iid.attr("root"))
	}
	m.InteractionID = iid.attr("extension")
	if m.InteractionID != root.local {
		return nil, fmt.Errorf("%w (root=%s interactionId=%s)", ErrInteractionMismatch, root.local, m.InteractionID)
	}
	id, err := root.one("id")
	if err != nil {
		return nil, err
	}
	m.MessageIDRoot, m.MessageIDExt = id.attr("root"), id.attr("extension")
	if m.MessageIDRoot == "" || m.MessageIDExt == "" {
		return nil, fmt.Errorf("%w (field=id)", ErrMissing)
	}
	if !isOID(m.MessageIDRoot) {
		return nil, fmt.Errorf("%w: message id root is not an oid (root=%s)", ErrBadIdentifier, m.MessageIDRoot)
	}
	ct, err := root.one("creationTime")
	if err != nil {
		return nil, err
	}
	if ct != nil {
		m.CreationTimeRaw = ct.attr("value")
		if m.CreationTime, err = ParseTS(m.CreationTimeRaw); err != nil {
			return nil, err
		}
	}
	if ack, err := root.one("acceptAckCode"); err != nil {
		return nil, err
	} else {
		m.AcceptAckCode = ack.attr("code")
	}
	if m.SenderApp, err = deviceID(root, "sender"); err != nil {
		return nil, err
	}
	if m.ReceiverApp, err = deviceID(root, "receiver"); err != nil {
		return nil, err
	}
	if m.Ack, err = readAck(root); err != nil {
		return nil, err
	}
	cact, err := root.one("ControlActProcess")
	if err != nil {
		return nil, err
	}
	if cact != nil {
		if err := readControlAct(cact, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// deviceID returns the AORTA application id of sender or receiver.
func deviceID(root *node, role string) (string, error) {
	dev, err := root.path(role, "device")
	if err != nil {
		return "", err
	}
	if dev == nil {
		return "", fmt.Errorf("%w (field=%s/device)", ErrMissing, role)
	}
	v, err := idUnder(dev, OIDApp)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("%w (field=%s/device/id root=%s)", ErrMissing, role, OIDApp)
	}
	return v, nil
}

// idUnder returns the extension of the single id child with the given root.
func idUnder(n *node, root string) (string, error) {
	var out string
	found := false
	for _, id := range n.all("id") {
		if id.attr("root") != root {
			continue
		}
		if found {
			return "", fmt.Errorf("%w (id root=%s)", ErrAmbiguous, root)
		}
		found = true
		out = id.attr("extension")
		if out == "" {
			return "", fmt.Errorf("%w: empty extension (root=%s)", ErrBadIdentifier, root)
		}
	}
	return out, nil
}

func readAck(root *node) (*Ack, error) {
	acks := root.all("acknowledgement")
	if len(acks) == 0 {
		return nil, nil
	}
	if len(acks) > 1 {
		return nil, fmt.Errorf("%w (element=acknowledgement)", ErrAmbiguous)
	}
	a := acks[0]
	out := &Ack{TypeCode: a.attr("typeCode")}
	if out.TypeCode == "" {
		return nil, fmt.Errorf("%w (field=acknowledgement@typeCode)", ErrMissing)
	}
	tid, err := a.path("targetMessage", "id")
	if err != nil {
		return nil, err
	}
	out.TargetRoot, out.TargetExt = tid.attr("root"), tid.attr("extension")
	for _, d := range a.all("acknowledgementDetail") {
		det := AckDetail{TypeCode: d.attr("typeCode")}
		c, err := d.one("code")
		if err != nil {
			return nil, err
		}
		det.Code, det.CodeSystem = c.attr("code"), c.attr("codeSystem")
		t, err := d.one("text")
		if err != nil {
			return nil, err
		}
		det.Text = t.textValue()
		if det.Text == "" && c != nil {
			det.Text = c.attr("displayName")
		}
		out.Details = append(out.Details, det)
		if len(out.Details) > 100 {
			break
		}
	}
	return out, nil
}

func readControlAct(cact *node, m *Message) error {
	code, err := cact.one("code")
	if err != nil {
		return err
	}
	m.TriggerCode = code.attr("code")
	// authorOrPerformer with typeCode AUT (the only kind AORTA uses).
	var aut *node
	for _, a := range cact.all("authorOrPerformer") {
		if tc := a.attr("typeCode"); tc != "" && tc != "AUT" {
			continue
		}
		if aut != nil {
			return fmt.Errorf("%w (element=authorOrPerformer)", ErrAmbiguous)
		}
		aut = a
	}
	if aut != nil {
		part, err := aut.one("participant")
		if err != nil {
			return err
		}
		if part == nil {
			return fmt.Errorf("%w (field=authorOrPerformer/participant)", ErrMissing)
		}
		person, err := part.one("AssignedPerson")
		if err != nil {
			return err
		}
		device, err := part.one("AssignedDevice")
		if err != nil {
			return err
		}
		switch {
		case person != nil && device != nil:
			return fmt.Errorf("%w: author is both person and device", ErrAmbiguous)
		case person != nil:
			if m.AuthorUZI, m.AuthorRole, m.AuthorURA, err = readAssigned(person); err != nil {
				return err
			}
			name, err := person.path("assignedPrincipalChoiceList", "assignedPerson", "name")
			if err != nil {
				return err
			}
			m.AuthorName = strings.Join(strings.Fields(name.textValue()), " ")
		case device != nil:
			if m.AuthorDevice, err = idUnder(device, OIDApp); err != nil {
				return err
			}
			org, err := device.one("Organization")
			if err != nil {
				return err
			}
			if org != nil {
				if m.AuthorURA, err = checked(idUnder(org, OIDURA))(isURA, "ura"); err != nil {
					return err
				}
			}
		}
	}
	var resp *node
	for _, o := range cact.all("overseer") {
		if tc := o.attr("typeCode"); tc != "" && tc != "RESP" {
			continue
		}
		if resp != nil {
			return fmt.Errorf("%w (element=overseer)", ErrAmbiguous)
		}
		resp = o
	}
	if resp != nil {
		ents := append(resp.all("assignedEntity"), resp.all("AssignedEntity")...)
		ents = append(ents, resp.all("AssignedPerson")...)
		if len(ents) != 1 {
			return fmt.Errorf("%w (element=overseer/assignedEntity count=%d)", ErrAmbiguous, len(ents))
		}
		if m.OverseerUZI, m.OverseerRole, m.OverseerURA, err = readAssigned(ents[0]); err != nil {
			return err
		}
	}
	qbp, err := cact.one("queryByParameter")
	if err != nil {
		return err
	}
	if qbp != nil {
		if err := readQuery(qbp, m); err != nil {
			return err
		}
	}
	qa, err := cact.one("queryAck")
	if err != nil {
		return err
	}
	if qa != nil {
		rc, err := qa.one("queryResponseCode")
		if err != nil {
			return err
		}
		m.QueryResponseCode = rc.attr("code")
		if m.QueryIDRoot == "" {
			q, err := qa.one("queryId")
			if err != nil {
				return err
			}
			m.QueryIDRoot, m.QueryIDExt = q.attr("root"), q.attr("extension")
		}
	}
	return nil
}

// readAssigned reads UZI number, role code and URA of an assigned person or entity.
func readAssigned(n *node) (uzi, role, ura string, err error) {
	if uzi, err = checked(idUnder(n, OIDUZI))(isUZI, "uzi"); err != nil {
		return
	}
	for _, c := range n.all("code") {
		if c.attr("codeSystem") != OIDRole {
			continue
		}
		if role != "" {
			return "", "", "", fmt.Errorf("%w (field=role code)", ErrAmbiguous)
		}
		role = c.attr("code")
		if !isRole(role) {
			return "", "", "", fmt.Errorf("%w: role code (code=%q)", ErrBadIdentifier, role)
		}
	}
	org, err := n.one("Organization")
	if err != nil {
		return "", "", "", err
	}
	if org == nil {
		org, err = n.one("representedOrganization")
		if err != nil {
			return "", "", "", err
		}
	}
	if org != nil {
		if ura, err = checked(idUnder(org, OIDURA))(isURA, "ura"); err != nil {
			return "", "", "", err
		}
	}
	return uzi, role, ura, nil
}

// checked adapts an (value, error) pair to a validation of the value.
func checked(v string, err error) func(ok func(string) bool, what string) (string, error) {
	return func(ok func(string) bool, what string) (string, error) {
		if err != nil {
			return "", err
		}
		if v != "" && !ok(v) {
			return "", fmt.Errorf("%w: %s (value=%q)", ErrBadIdentifier, what, v)
		}
		return v, nil
	}
}

func readQuery(q *node, m *Message) error {
	qid, err := q.one("queryId")
	if err != nil {
		return err
	}
	m.QueryIDRoot, m.QueryIDExt = qid.attr("root"), qid.attr("extension")
	// GQZG uses patientId, some QURX models patientID; accept both, not both at once.
	pids := append(q.all("patientId"), q.all("patientID")...)
	if len(pids) > 1 {
		return fmt.Errorf("%w (element=patientId)", ErrAmbiguous)
	}
	if len(pids) == 0 {
		return nil
	}
	vals := pids[0].all("value")
	if len(vals) != 1 {
		return fmt.Errorf("%w (element=patientId/value count=%d)", ErrAmbiguous, len(vals))
	}
	m.PatientIDRoot, m.PatientIDExt = vals[0].attr("root"), vals[0].attr("extension")
	if m.PatientIDRoot == OIDBSN {
		if !ValidBSN(m.PatientIDExt) {
			return fmt.Errorf("%w (value=%q)", ErrBadBSN, m.PatientIDExt)
		}
		m.BSN = m.PatientIDExt
	}
	return nil
}

// ValidBSN reports whether s is a 9-digit BSN passing the eleven-test
// (9*d1 + 8*d2 + ... + 2*d8 - 1*d9 divisible by 11, not all zero).
func ValidBSN(s string) bool {
	if len(s) != 9 || !allDigits(s) {
		return false
	}
	sum := 0
	for i := 0; i < 8; i++ {
		sum += int(s[i]-'0') * (9 - i)
	}
	sum -= int(s[8] - '0')
	return sum%11 == 0 && s != "000000000"
}

func isUZI(s string) bool  { return len(s) == 9 && allDigits(s) }
func isURA(s string) bool  { return len(s) == 8 && allDigits(s) }
func isRole(s string) bool { return len(s) == 6 && s[2] == '.' && allDigits(s[:2]) && allDigits(s[3:]) }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isOID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !allDigits(part) || (len(part) > 1 && part[0] == '0') {
			return false
		}
	}
	return true
}

// ParseTS parses an HL7v3 TS value (yyyyMMdd[HHmm[ss[.f+]]][+/-ZZzz]).
// Without a zone the time is taken as Europe/Amsterdam local time [P].
func ParseTS(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("%w (field=creationTime@value)", ErrMissing)
	}
	base, zone := v, ""
	if i := strings.IndexAny(v, "+-"); i >= 0 {
		base, zone = v[:i], v[i:]
	}
	frac := ""
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base, frac = base[:i], base[i+1:]
		if len(base) != 14 || frac == "" || len(frac) > 9 || !allDigits(frac) {
			return time.Time{}, fmt.Errorf("%w: timestamp (value=%q)", ErrMalformed, v)
		}
	}
	if !allDigits(base) {
		return time.Time{}, fmt.Errorf("%w: timestamp (value=%q)", ErrMalformed, v)
	}
	var layout string
	switch len(base) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("%w: timestamp (value=%q)", ErrMalformed, v)
	}
	loc := amsterdam()
	if zone != "" {
		if len(zone) != 5 || !allDigits(zone[1:]) {
			return time.Time{}, fmt.Errorf("%w: timestamp zone (value=%q)", ErrMalformed, v)
		}
		h := int(zone[1]-'0')*10 + int(zone[2]-'0')
		mi := int(zone[3]-'0')*10 + int(zone[4]-'0')
		off := (h*60 + mi) * 60
		if zone[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(zone, off)
	}
	t, err := time.ParseInLocation(layout, base, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: timestamp (value=%q)", ErrMalformed, v)
	}
	if frac != "" {
		ns := 0
		for i := 0; i < 9; i++ {
			ns *= 10
			if i < len(frac) {
				ns += int(frac[i] - '0')
			}
		}
		t = t.Add(time.Duration(ns))
	}
	return t, nil
}

var amsterdam = sync.OnceValue(func() *time.Location {
	if loc, err := time.LoadLocation("Europe/Amsterdam"); err == nil {
		return loc
	}
	return time.UTC
})

// Body is what ReadEnvelope needs from a parsed SOAP envelope
// (*soap.Envelope satisfies it).
type Body interface {
	BodyElement() []byte
	BodyNamespaces() map[string]string
}

// ReadEnvelope reads the HL7v3 message in the body of a parsed envelope,
// with the envelope's namespace declarations in scope.
func ReadEnvelope(env Body) (*Message, error) {
	return ReadScope(env.BodyElement(), env.BodyNamespaces(), xmlsafe.Limits{})
}
