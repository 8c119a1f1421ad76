package hl7

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/soap"
)

// TestReaderMatchesReadEnvelope: reading the body in the envelope's own
// tokenising pass gives exactly what ReadEnvelope (a second pass) gives,
// messages and refusals alike.
func TestReaderMatchesReadEnvelope(t *testing.T) {
	scoped := `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:hl7-org:v3"><soapenv:Header/><soapenv:Body>` +
		`<urn:GQZG_IN000001NL><urn:id root="1.2" extension="x"/><urn:interactionId root="2.16.840.1.113883.1.6" extension="GQZG_IN000001NL"/>` +
		`<urn:receiver><urn:device><urn:id root="2.16.840.1.113883.2.4.6.6" extension="1"/></urn:device></urn:receiver>` +
		`<urn:sender><urn:device><urn:id root="2.16.840.1.113883.2.4.6.6" extension="5"/></urn:device></urn:sender></urn:GQZG_IN000001NL>` +
		"\n</soapenv:Body></soapenv:Envelope>"
	tests := []struct{ name, env string }{
		{"sample", string(soap.Build([]byte(gqzg)))},
		{"prefixes declared on the envelope", scoped},
		{"fault body", string(soap.MarshalFault(soap.Fault{Code: "soap:Server", String: "x"}))},
		{"text and comments", string(soap.Build([]byte(strings.Replace(gqzg, `<creationTime`, `<!-- c --><creationTime`, 1))))},
		{"wrong namespace", string(soap.Build([]byte(strings.Replace(gqzg, `xmlns="urn:hl7-org:v3"`, `xmlns="urn:hl7-org:v2"`, 1))))},
		{"two patient ids", string(soap.Build([]byte(strings.Replace(gqzg, `<patientId>`, `<patientId><value root="1" extension="1"/></patientId><patientId>`, 1))))},
		{"bad bsn", string(soap.Build([]byte(strings.Replace(gqzg, `extension="999911466"`, `extension="999911467"`, 1))))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r *Reader
			env, err := soap.ParseEnvelopeVisit([]byte(tc.env), soap.Limits{}, func(tok xml.Token, scope map[string]string) {
				if r == nil {
					r = NewReader(scope)
				}
				r.Token(tok)
			})
			require.NoError(t, err)
			require.NotNil(t, r, "the body tokens were handed over")
			want, wantErr := ReadEnvelope(env)
			got, gotErr := r.Message()
			if wantErr != nil {
				require.Error(t, gotErr)
				assert.Equal(t, wantErr.Error(), gotErr.Error())
				for _, s := range []error{ErrMalformed, ErrNotHL7, ErrAmbiguous, ErrBadBSN, ErrMissing} {
					assert.Equal(t, errors.Is(wantErr, s), errors.Is(gotErr, s), "sentinel %v", s)
				}
				return
			}
			require.NoError(t, gotErr)
			assert.Equal(t, want, got)
		})
	}
}

func TestReaderIncomplete(t *testing.T) {
	r := NewReader(nil)
	r.Token(xml.StartElement{Name: xml.Name{Local: "GQZG_IN000001NL"}})
	_, err := r.Message()
	require.ErrorIs(t, err, ErrMalformed)
}
