package hl7

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"time"
)

// Interactions the query builder supports, and their response interactions.
const (
	// QURXQuery is the medication dispense query ("Verstrekkingenquery",
	// trigger QURX_TE990011NL) [I: aorta-uzi.md section 10].
	QURXQuery = "QURX_IN990011NL"
	// QURXResponse answers QURXQuery [P].
	QURXResponse = "QURX_IN990113NL"
	// GQZGQuery is the generic parametrised query [C:ZIDWS].
	GQZGQuery = "GQZG_IN000001NL"
	// GQZGResponse answers GQZGQuery [P].
	GQZGResponse = "GQZG_IN000002NL"
)

// ID is an HL7v3 instance identifier (II).
type ID struct{ Root, Ext string }

// Person is an assigned person: a caregiver with UZI number, role and URA.
type Person struct {
	UZI, Role, RoleName, Name string
	URA, OrgName              string
}

// QueryParams fills a query template.
type QueryParams struct {
	Interaction   string // QURXQuery or GQZGQuery
	MessageID     ID
	QueryID       ID // zero: {MessageID.Root, "q-" + MessageID.Ext}
	Created       time.Time
	SenderApp     string // our AORTA application id
	ReceiverApp   string // "" = LSPApp
	AcceptAckCode string // "" = "NE"
	// Author is the caregiver the query is sent for; AuthorDevice (an AORTA
	// application id) is used instead when Author.UZI is empty, with
	// Author.URA as its organisation.
	Author       Person
	AuthorDevice string
	// Overseer, when not nil, is the mandating caregiver (overseer RESP).
	Overseer *Person
	BSN      string
	// ContextCode is an optional query context code (codeSystem OIDContextCode), e.g. "KZDI".
	ContextCode string
}

// FormatTS formats t as an HL7v3 TS (yyyyMMddHHmmss) in Dutch local time.
func FormatTS(t time.Time) string { return t.In(amsterdam()).Format("20060102150405") }

func (p *QueryParams) validate() error {
	switch p.Interaction {
	case QURXQuery, GQZGQuery:
	default:
		return fmt.Errorf("%w (interaction=%q)", ErrUnsupported, p.Interaction)
	}
	if !isOID(p.MessageID.Root) || p.MessageID.Ext == "" {
		return fmt.Errorf("%w: message id (root=%q ext=%q)", ErrBadIdentifier, p.MessageID.Root, p.MessageID.Ext)
	}
	if p.QueryID == (ID{}) {
		p.QueryID = ID{Root: p.MessageID.Root, Ext: "q-" + p.MessageID.Ext}
	}
	if !isOID(p.QueryID.Root) || p.QueryID.Ext == "" {
		return fmt.Errorf("%w: query id", ErrBadIdentifier)
	}
	if p.Created.IsZero() {
		return fmt.Errorf("%w (field=Created)", ErrMissing)
	}
	if !allDigits(p.SenderApp) {
		return fmt.Errorf("%w: sender application id (value=%q)", ErrBadIdentifier, p.SenderApp)
	}
	if p.ReceiverApp == "" {
		p.ReceiverApp = LSPApp
	}
	if !allDigits(p.ReceiverApp) {
		return fmt.Errorf("%w: receiver application id", ErrBadIdentifier)
	}
	if p.AcceptAckCode == "" {
		p.AcceptAckCode = "NE"
	}
	switch p.AcceptAckCode {
	case "NE", "AL", "ER":
	default:
		return fmt.Errorf("%w: acceptAckCode (value=%q)", ErrBadIdentifier, p.AcceptAckCode)
	}
	if p.Author.UZI == "" {
		if !allDigits(p.AuthorDevice) {
			return fmt.Errorf("%w: author needs a UZI number or an application id", ErrMissing)
		}
		if !isURA(p.Author.URA) {
			return fmt.Errorf("%w: author ura (value=%q)", ErrBadIdentifier, p.Author.URA)
		}
	} else if err := checkPerson(p.Author); err != nil {
		return fmt.Errorf("author: %w", err)
	}
	if p.Overseer != nil {
		if err := checkPerson(*p.Overseer); err != nil {
			return fmt.Errorf("overseer: %w", err)
		}
	}
	if !ValidBSN(p.BSN) {
		return fmt.Errorf("%w (value=%q)", ErrBadBSN, p.BSN)
	}
	return nil
}

func checkPerson(p Person) error {
	switch {
	case !isUZI(p.UZI):
		return fmt.Errorf("%w: uzi (value=%q)", ErrBadIdentifier, p.UZI)
	case !isRole(p.Role):
		return fmt.Errorf("%w: role (value=%q)", ErrBadIdentifier, p.Role)
	case !isURA(p.URA):
		return fmt.Errorf("%w: ura (value=%q)", ErrBadIdentifier, p.URA)
	}
	return nil
}

// BuildQuery renders a query message (the element that goes in soap:Body)
// from its template. Every value is XML-escaped; invalid identifiers are
// refused. The output reads back with Read to the same values.
func BuildQuery(p QueryParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	w := &Writer{}
	ts := FormatTS(p.Created)
	w.Open(p.Interaction, "xmlns", NS)
	w.Empty("id", "root", p.MessageID.Root, "extension", p.MessageID.Ext)
	w.Empty("creationTime", "value", ts)
	w.Empty("versionCode", "code", "NICTIZEd2005-Okt")
	w.Empty("interactionId", "root", OIDInteraction, "extension", p.Interaction)
	w.Empty("profileId", "root", OIDProfile, "extension", "810")
	w.Empty("processingCode", "code", "P")
	w.Empty("processingModeCode", "code", "T")
	w.Empty("acceptAckCode", "code", p.AcceptAckCode)
	w.device("receiver", p.ReceiverApp)
	w.device("sender", p.SenderApp)
	w.Open("ControlActProcess", "moodCode", "EVN")
	if p.Interaction == QURXQuery {
		w.Empty("code", "code", "QURX_TE990011NL", "codeSystem", OIDTrigger)
	}
	w.Open("authorOrPerformer", "typeCode", "AUT")
	w.Open("participant")
	if p.Author.UZI != "" {
		w.Open("AssignedPerson")
		w.person(p.Author)
		w.Close("AssignedPerson")
	} else {
		w.Open("AssignedDevice")
		w.Empty("id", "root", OIDApp, "extension", p.AuthorDevice)
		w.org(p.Author.URA, p.Author.OrgName)
		w.Close("AssignedDevice")
	}
	w.Close("participant")
	w.Close("authorOrPerformer")
	if p.Overseer != nil {
		w.Open("overseer", "typeCode", "RESP")
		w.Open("assignedEntity")
		w.person(*p.Overseer)
		w.Close("assignedEntity")
		w.Close("overseer")
	}
	w.Open("queryByParameter")
	if p.Interaction == GQZGQuery {
		w.Empty("templateId", "root", "2.16.840.1.113883.2.4.3.11.60.66.10.3")
	}
	w.Empty("queryId", "root", p.QueryID.Root, "extension", p.QueryID.Ext)
	w.Empty("statusCode", "code", "executing")
	if p.Interaction == GQZGQuery {
		w.Empty("responseModalityCode", "code", "B")
	} else {
		w.Empty("responseModalityCode", "code", "R")
	}
	w.Empty("responsePriorityCode", "code", "I")
	w.Empty("executionAndDeliveryTime", "value", ts)
	pid := "patientId"
	if p.Interaction == QURXQuery {
		pid = "patientID"
	}
	w.Open(pid)
	w.Empty("value", "root", OIDBSN, "extension", p.BSN)
	w.Close(pid)
	if p.ContextCode != "" {
		w.Open("contextCode")
		w.Empty("value", "code", p.ContextCode, "codeSystem", OIDContextCode)
		w.Close("contextCode")
	}
	w.Close("queryByParameter")
	w.Close("ControlActProcess")
	w.Close(p.Interaction)
	return w.Bytes(), nil
}

// Writer writes HL7 elements in the default namespace, escaping every
// attribute value and text. Attributes are name, value pairs. The zero value is
// ready to use; a Writer is not safe for concurrent use.
type Writer struct{ b bytes.Buffer }

// Bytes returns what was written so far.
func (w *Writer) Bytes() []byte { return w.b.Bytes() }

func (w *Writer) tag(name string, attrs []string) {
	w.b.WriteByte('<')
	w.b.WriteString(name)
	for i := 0; i+1 < len(attrs); i += 2 {
		w.b.WriteByte(' ')
		w.b.WriteString(attrs[i])
		w.b.WriteString(`="`)
		_ = xml.EscapeText(&w.b, []byte(attrs[i+1]))
		w.b.WriteByte('"')
	}
}

// Open writes a start tag.
func (w *Writer) Open(name string, attrs ...string) { w.tag(name, attrs); w.b.WriteByte('>') }

// Empty writes an empty element.
func (w *Writer) Empty(name string, attrs ...string) {
	w.tag(name, attrs)
	w.b.WriteString("/>")
}

// Close writes an end tag.
func (w *Writer) Close(name string) { w.b.WriteString("</" + name + ">") }

// Text writes an element holding escaped text.
func (w *Writer) Text(name, v string, attrs ...string) {
	w.Open(name, attrs...)
	_ = xml.EscapeText(&w.b, []byte(v))
	w.Close(name)
}

func (w *Writer) device(role, app string) {
	w.Open(role)
	w.Open("device", "classCode", "DEV", "determinerCode", "INSTANCE")
	w.Empty("id", "root", OIDApp, "extension", app)
	w.Close("device")
	w.Close(role)
}

func (w *Writer) person(p Person) {
	w.Empty("id", "root", OIDUZI, "extension", p.UZI)
	if p.RoleName != "" {
		w.Empty("code", "code", p.Role, "codeSystem", OIDRole, "displayName", p.RoleName)
	} else {
		w.Empty("code", "code", p.Role, "codeSystem", OIDRole)
	}
	if p.Name != "" {
		w.Open("assignedPrincipalChoiceList")
		w.Open("assignedPerson")
		w.Text("name", p.Name)
		w.Close("assignedPerson")
		w.Close("assignedPrincipalChoiceList")
	}
	w.org(p.URA, p.OrgName)
}

func (w *Writer) org(ura, name string) {
	w.Open("Organization")
	w.Empty("id", "root", OIDURA, "extension", ura)
	if name != "" {
		w.Text("name", name)
	}
	w.Close("Organization")
}
