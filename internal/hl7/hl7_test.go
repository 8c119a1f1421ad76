package hl7

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// gqzg is shaped like the VZVZ ZORG-ID GQZG_IN000001NL sample (values ours).
const gqzg = `<GQZG_IN000001NL xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<id extension="90326-2" root="2.16.528.1.1007.3.3.90326.1" />
<creationTime value="20261123201500" />
<versionCode code="NICTIZEd2005-Okt" />
<interactionId extension="GQZG_IN000001NL" root="2.16.840.1.113883.1.6" />
<profileId extension="810" root="2.16.840.1.113883.2.4.3.11.1" />
<processingCode code="P" /><processingModeCode code="T" /><acceptAckCode code="NE" />
<receiver><device classCode="DEV" determinerCode="INSTANCE"><id extension="1" root="2.16.840.1.113883.2.4.6.6" /></device></receiver>
<sender><device classCode="DEV" determinerCode="INSTANCE"><id extension="90000326" root="2.16.840.1.113883.2.4.6.6" /></device></sender>
<ControlActProcess moodCode="EVN">
 <authorOrPerformer typeCode="AUT"><participant><AssignedPerson>
  <id extension="123456782" root="2.16.528.1.1007.3.1" />
  <id extension="01234567" root="2.16.840.1.113883.2.4.6.1" />
  <code code="01.015" codeSystem="2.16.840.1.113883.2.4.15.111" displayName="Huisarts" />
  <assignedPrincipalChoiceList><assignedPerson><name>J. <!-- x -->Jansen</name></assignedPerson></assignedPrincipalChoiceList>
  <Organization><id extension="90000382" root="2.16.528.1.1007.3.3" /><code code="Z3" codeSystem="2.16.840.1.113883.2.4.15.1060" /><name>Gezondheidscentrum</name></Organization>
 </AssignedPerson></participant></authorOrPerformer>
 <overseer typeCode="RESP"><assignedEntity>
  <id extension="987654321" root="2.16.528.1.1007.3.1" />
  <code code="01.016" codeSystem="2.16.840.1.113883.2.4.15.111" />
  <Organization><id extension="90000382" root="2.16.528.1.1007.3.3" /></Organization>
 </assignedEntity></overseer>
 <queryByParameter>
  <templateId root="2.16.840.1.113883.2.4.3.11.60.66.10.3" />
  <queryId extension="Q-1" root="2.16.528.1.1007.3.3.90326.1" />
  <statusCode code="executing" /><responseModalityCode code="B" /><responsePriorityCode code="I" />
  <patientId><value extension="999911466" root="2.16.840.1.113883.2.4.6.3" /></patientId>
  <contextCode><value code="KZDI" codeSystem="2.16.840.1.113883.2.4.3.111.15.1" /></contextCode>
 </queryByParameter>
</ControlActProcess>
</GQZG_IN000001NL>`

func TestReadSample(t *testing.T) {
	m, err := Read([]byte(" \n" + gqzg + "\n"))
	require.NoError(t, err)
	ams, err := time.LoadLocation("Europe/Amsterdam")
	require.NoError(t, err)
	assert.Equal(t, &Message{
		InteractionID: "GQZG_IN000001NL", MessageIDRoot: "2.16.528.1.1007.3.3.90326.1", MessageIDExt: "90326-2",
		CreationTime: time.Date(2026, 11, 23, 20, 15, 0, 0, ams), CreationTimeRaw: "20261123201500",
		AcceptAckCode: "NE", SenderApp: "90000326", ReceiverApp: "1",
		AuthorUZI: "123456782", AuthorRole: "01.015", AuthorURA: "90000382", AuthorName: "J. Jansen",
		OverseerUZI: "987654321", OverseerRole: "01.016", OverseerURA: "90000382",
		BSN: "999911466", PatientIDRoot: OIDBSN, PatientIDExt: "999911466",
		QueryIDRoot: "2.16.528.1.1007.3.3.90326.1", QueryIDExt: "Q-1",
	}, m)
}

func TestReadScope(t *testing.T) {
	body := `<urn:GQZG_IN000001NL><urn:id root="1.2" extension="x"/><urn:interactionId root="2.16.840.1.113883.1.6" extension="GQZG_IN000001NL"/>` +
		`<urn:receiver><urn:device><urn:id root="2.16.840.1.113883.2.4.6.6" extension="1"/></urn:device></urn:receiver>` +
		`<urn:sender><urn:device><urn:id root="2.16.840.1.113883.2.4.6.6" extension="5"/></urn:device></urn:sender></urn:GQZG_IN000001NL>`
	_, err := Read([]byte(body))
	require.ErrorIs(t, err, ErrMalformed, "undeclared prefix without scope")
	m, err := ReadScope([]byte(body), map[string]string{"urn": NS, "": "urn:other"}, xmlsafe.Limits{})
	require.NoError(t, err)
	assert.Equal(t, "GQZG_IN000001NL", m.InteractionID)
	assert.Equal(t, "5", m.SenderApp)
}

func TestReadStrict(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     error
	}{
		{"interaction mismatch", `extension="GQZG_IN000001NL" root="2.16.840.1.113883.1.6"`, `extension="QURX_IN990011NL" root="2.16.840.1.113883.1.6"`, ErrInteractionMismatch},
		{"interaction wrong root", `root="2.16.840.1.113883.1.6"`, `root="1.2.3"`, ErrBadIdentifier},
		{"bsn bad eleven test", `extension="999911466" root="2.16.840.1.113883.2.4.6.3"`, `extension="999911467" root="2.16.840.1.113883.2.4.6.3"`, ErrBadBSN},
		{"two patient ids", `<patientId>`, `<patientId><value root="1" extension="1"/></patientId><patientId>`, ErrAmbiguous},
		{"two message ids", `<creationTime`, `<id root="1.2" extension="3"/><creationTime`, ErrAmbiguous},
		{"two uzi ids", `<id extension="01234567" root="2.16.840.1.113883.2.4.6.1" />`, `<id extension="111222333" root="2.16.528.1.1007.3.1" />`, ErrAmbiguous},
		{"bad uzi", `extension="123456782" root="2.16.528.1.1007.3.1"`, `extension="12345" root="2.16.528.1.1007.3.1"`, ErrBadIdentifier},
		{"bad ura", `<Organization><id extension="90000382"`, `<Organization><id extension="9000038x"`, ErrBadIdentifier},
		{"bad role", `code="01.015"`, `code="huisarts"`, ErrBadIdentifier},
		{"missing sender", `<sender>`, `<sender2>`, ErrMissing},
		{"bad time", `value="20261123201500"`, `value="2026-11-23"`, ErrMalformed},
		{"wrong namespace", `xmlns="urn:hl7-org:v3"`, `xmlns="urn:hl7-org:v2"`, ErrNotHL7},
		{"doctype", "<GQZG_IN000001NL ", "<!DOCTYPE x><GQZG_IN000001NL ", ErrMalformed},
		{"two authors", `<overseer`, `<authorOrPerformer typeCode="AUT"/><overseer`, ErrAmbiguous},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(gqzg, tc.old, tc.new, 1)
			if tc.name == "missing sender" {
				doc = strings.Replace(doc, `</sender>`, `</sender2>`, 1)
			}
			require.NotEqual(t, gqzg, doc)
			_, err := Read([]byte(doc))
			require.ErrorIs(t, err, tc.want)
		})
	}
	// A BSN-shaped value under another root is not a BSN.
	doc := strings.Replace(gqzg, `extension="999911466" root="2.16.840.1.113883.2.4.6.3"`, `extension="999911466" root="2.16.840.1.113883.2.4.6.1"`, 1)
	m, err := Read([]byte(doc))
	require.NoError(t, err)
	assert.Empty(t, m.BSN)
	assert.Equal(t, "999911466", m.PatientIDExt)
	// Missing sender device is refused.
	_, err = Read([]byte(strings.Replace(gqzg, `<id extension="90000326" root="2.16.840.1.113883.2.4.6.6" />`, ``, 1)))
	require.ErrorIs(t, err, ErrMissing)
}

func TestReadAck(t *testing.T) {
	doc := `<MCCI_IN000002NL xmlns="urn:hl7-org:v3"><id root="2.16.840.1.113883.2.4.6.6.1" extension="a1"/><creationTime value="20261123201500+0100"/>
<interactionId root="2.16.840.1.113883.1.6" extension="MCCI_IN000002NL"/>
<acknowledgement typeCode="AE"><targetMessage><id root="1.2.3" extension="m1"/></targetMessage>
<acknowledgementDetail typeCode="E"><code code="ZIM-401" codeSystem="2.16.840.1.113883.2.4.15.1" displayName="fallback"/><text>Geen toestemming</text></acknowledgementDetail>
<acknowledgementDetail typeCode="W"><code code="W1" codeSystem="x" displayName="let op"/></acknowledgementDetail></acknowledgement>
<receiver><device><id root="2.16.840.1.113883.2.4.6.6" extension="5"/></device></receiver>
<sender><device><id root="2.16.840.1.113883.2.4.6.6" extension="1"/></device></sender></MCCI_IN000002NL>`
	m, err := Read([]byte(doc))
	require.NoError(t, err)
	require.NotNil(t, m.Ack)
	assert.True(t, m.Ack.IsError())
	assert.Equal(t, &Ack{TypeCode: "AE", TargetRoot: "1.2.3", TargetExt: "m1", Details: []AckDetail{
		{TypeCode: "E", Code: "ZIM-401", CodeSystem: "2.16.840.1.113883.2.4.15.1", Text: "Geen toestemming"},
		{TypeCode: "W", Code: "W1", CodeSystem: "x", Text: "let op"},
	}}, m.Ack)
	assert.Equal(t, time.Date(2026, 11, 23, 19, 15, 0, 0, time.UTC), m.CreationTime.UTC())
}

func validParams(interaction string) QueryParams {
	return QueryParams{
		Interaction: interaction,
		MessageID:   ID{Root: "2.16.528.1.1007.3.3.90000382.1", Ext: "m-1"},
		Created:     time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC),
		SenderApp:   "90000326",
		Author:      Person{UZI: "123456782", Role: "01.015", Name: `A & "B" <c>`, URA: "90000382", OrgName: "Zkh <Test>"},
		Overseer:    &Person{UZI: "987654321", Role: "01.016", URA: "90000382"},
		BSN:         "999911466",
		ContextCode: "KZDI",
	}
}

func TestBuildQueryRoundTrip(t *testing.T) {
	for _, in := range []string{QURXQuery, GQZGQuery} {
		t.Run(in, func(t *testing.T) {
			p := validParams(in)
			b, err := BuildQuery(p)
			require.NoError(t, err)
			require.NoError(t, xmlsafe.Check(b, xmlsafe.MessageLimits))
			m, err := Read(b)
			require.NoError(t, err)
			assert.Equal(t, in, m.InteractionID)
			assert.Equal(t, p.MessageID, ID{m.MessageIDRoot, m.MessageIDExt})
			assert.True(t, p.Created.Equal(m.CreationTime))
			assert.Equal(t, "90000326", m.SenderApp)
			assert.Equal(t, LSPApp, m.ReceiverApp)
			assert.Equal(t, "123456782", m.AuthorUZI)
			assert.Equal(t, "01.015", m.AuthorRole)
			assert.Equal(t, "90000382", m.AuthorURA)
			assert.Equal(t, `A & "B" <c>`, m.AuthorName)
			assert.Equal(t, "987654321", m.OverseerUZI)
			assert.Equal(t, "999911466", m.BSN)
			assert.Equal(t, "q-m-1", m.QueryIDExt)
		})
	}
	p := validParams(GQZGQuery)
	p.Author = Person{URA: "90000382"}
	p.AuthorDevice = "90000326"
	b, err := BuildQuery(p)
	require.NoError(t, err)
	m, err := Read(b)
	require.NoError(t, err)
	assert.Equal(t, "90000326", m.AuthorDevice)
	assert.Empty(t, m.AuthorUZI)
	assert.Equal(t, "90000382", m.AuthorURA)
}

func TestBuildQueryRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*QueryParams)
		want   error
	}{
		{"interaction", func(p *QueryParams) { p.Interaction = "X" }, ErrUnsupported},
		{"bsn", func(p *QueryParams) { p.BSN = "123456789" }, ErrBadBSN},
		{"uzi", func(p *QueryParams) { p.Author.UZI = "1" }, ErrBadIdentifier},
		{"message root", func(p *QueryParams) { p.MessageID.Root = "abc" }, ErrBadIdentifier},
		{"created", func(p *QueryParams) { p.Created = time.Time{} }, ErrMissing},
		{"sender", func(p *QueryParams) { p.SenderApp = "x\"" }, ErrBadIdentifier},
		{"overseer role", func(p *QueryParams) { p.Overseer.Role = "1" }, ErrBadIdentifier},
		{"no author", func(p *QueryParams) { p.Author.UZI = "" }, ErrMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := validParams(QURXQuery)
			tc.mutate(&p)
			_, err := BuildQuery(p)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestValidBSN(t *testing.T) {
	for _, ok := range []string{"999911466", "111222333", "123456782"} {
		assert.True(t, ValidBSN(ok), ok)
	}
	for _, bad := range []string{"", "12345678", "999911467", "000000000", "99991146a", "1234567890"} {
		assert.False(t, ValidBSN(bad), bad)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(gqzg))
	b, _ := BuildQuery(validParams(QURXQuery))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(b)
		if err != nil {
			return
		}
		if m.InteractionID == "" || m.MessageIDRoot == "" || m.SenderApp == "" {
			t.Fatalf("accepted without required fields: %+v", m)
		}
		if m.BSN != "" && !ValidBSN(m.BSN) {
			t.Fatalf("invalid bsn accepted: %q", m.BSN)
		}
	})
}

func FuzzParseTS(f *testing.F) {
	for _, s := range []string{"20261123", "202611232015", "20261123201500", "20261123201500.123+0100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseTS(s) })
}
