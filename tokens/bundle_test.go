package tokens

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type bundleFixture struct {
	enr, mdt, trxServer, trxCare *Signed
	binding                      Binding
}

func newBundleFixture(t *testing.T) bundleFixture {
	p := testPKI(t)
	enr, err := newTestSigner(t, p.zAut).SignEnrolment(sampleEnrolment())
	require.NoError(t, err)
	mdt, err := newTestSigner(t, p.zHnd).SignMandate(sampleMandate())
	require.NoError(t, err)
	trx, err := newTestSigner(t, p.server).SignTransaction(sampleTransaction())
	require.NoError(t, err)
	care, err := newTestSigner(t, p.zAut).SignTransaction(sampleTransaction())
	require.NoError(t, err)
	return bundleFixture{enr: enr, mdt: mdt, trxServer: trx, trxCare: care, binding: Binding{
		URA: "90000382", BSN: "999911120", InteractionID: "GQZG_IN000001NL",
		MessageIDRoot: "2.16.528.1.1007.3.3.90326.1", MessageIDExt: "90326-2",
		AuthorNameID: "000000012:30.000", OverseerNameID: "123456782:01.015", PeerURA: "90000382",
	}}
}

func TestVerifyBundle(t *testing.T) {
	f := newBundleFixture(t)
	p := testPKI(t)
	otherURA := func() []byte {
		tr := sampleTransaction()
		tr.URA = "90000999"
		s, err := newTestSigner(t, p.nAut).SignTransaction(tr)
		require.NoError(t, err)
		return s.Bytes()
	}
	noBSN := func() []byte {
		tr := sampleTransaction()
		tr.BSN = ""
		s, err := newTestSigner(t, p.server).SignTransaction(tr)
		require.NoError(t, err)
		return s.Bytes()
	}
	otherContext := func() []byte {
		tr := sampleTransaction()
		tr.Context = "https://ziekenhuis.example/autorisatieregels/other"
		s, err := newTestSigner(t, p.server).SignTransaction(tr)
		require.NoError(t, err)
		return s.Bytes()
	}
	personsOnly := func() []byte {
		m := sampleMandate()
		m.Mandated = []string{"000000012"}
		s, err := newTestSigner(t, p.zHnd).SignMandate(m)
		require.NoError(t, err)
		return s.Bytes()
	}
	full := Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: f.trxServer.Bytes()}
	tests := []struct {
		name string
		b    Bundle
		mod  func(*Binding)
		want error
	}{
		{"server-signed with mandate and enrolment", full, nil, nil},
		{"caregiver-signed alone", Bundle{Transaction: f.trxCare.Bytes()}, func(m *Binding) { m.AuthorNameID = "123456782:01.015" }, nil},
		{"caregiver-signed, author differs", Bundle{Transaction: f.trxCare.Bytes()}, func(m *Binding) { m.AuthorNameID = "000000012:30.000" }, ErrBindingAuthor},
		{"no transaction", Bundle{Enrolment: f.enr.Bytes()}, nil, ErrMissingToken},
		{"server-signed without mandate", Bundle{Enrolment: f.enr.Bytes(), Transaction: f.trxServer.Bytes()}, nil, ErrMissingToken},
		{"server-signed without enrolment", Bundle{Mandate: f.mdt.Bytes(), Transaction: f.trxServer.Bytes()}, nil, ErrMissingToken},
		{"message ura differs", full, func(m *Binding) { m.URA = "90000999" }, ErrBindingURA},
		{"token ura differs from enrolment", Bundle{Enrolment: f.enr.Bytes(), Transaction: otherURA()}, func(m *Binding) { m.URA, m.PeerURA, m.AuthorNameID = "90000999", "", "000000012:30.000" }, ErrBindingURA},
		{"mtls peer differs", full, func(m *Binding) { m.PeerURA = "90000999" }, ErrBindingPeer},
		{"bsn differs", full, func(m *Binding) { m.BSN = "999912446" }, ErrBindingBSN},
		{"token has bsn, message none", full, func(m *Binding) { m.BSN = "" }, ErrBindingBSN},
		{"message has bsn, token none", Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: noBSN()}, nil, ErrBindingBSN},
		{"context differs", Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: otherContext()}, nil, ErrBindingContext},
		{"interaction differs", full, func(m *Binding) { m.InteractionID = "QURX_IN990011NL" }, ErrBindingInteraction},
		{"message id differs", full, func(m *Binding) { m.MessageIDExt = "90326-3" }, ErrBindingMessageID},
		{"author not mandated, application mandated", full, func(m *Binding) { m.AuthorNameID = "999999990:01.015" }, nil},
		{"author not mandated", Bundle{Enrolment: f.enr.Bytes(), Mandate: personsOnly(), Transaction: f.trxServer.Bytes()}, func(m *Binding) { m.AuthorNameID = "999999990:01.015" }, ErrBindingMandate},
		{"overseer is not the giver", full, func(m *Binding) { m.OverseerNameID = "000000012:30.000" }, ErrBindingMandate},
		{"tokens swapped", Bundle{Enrolment: f.mdt.Bytes(), Mandate: f.enr.Bytes(), Transaction: f.trxServer.Bytes()}, nil, ErrWrongType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := f.binding
			if tc.mod != nil {
				tc.mod(&m)
			}
			_, err := newTestValidator(t).VerifyBundle(context.Background(), tc.b, m)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.want, "got %v", err)
		})
	}
	t.Run("replay of the transaction token", func(t *testing.T) {
		v := newTestValidator(t)
		_, err := v.VerifyBundle(context.Background(), full, f.binding)
		require.NoError(t, err)
		_, err = v.VerifyBundle(context.Background(), full, f.binding)
		assert.ErrorIs(t, err, ErrReplay)
	})
	t.Run("failed binding does not burn the token", func(t *testing.T) {
		v := newTestValidator(t)
		bad := f.binding
		bad.BSN = "999912446"
		_, err := v.VerifyBundle(context.Background(), full, bad)
		require.ErrorIs(t, err, ErrBindingBSN)
		_, err = v.VerifyBundle(context.Background(), full, f.binding)
		assert.NoError(t, err)
	})
}

func envelope(header, body string) []byte {
	return []byte(`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>` + header +
		`</soap:Header><soap:Body>` + body + `</soap:Body></soap:Envelope>`)
}

func security(tokens ...string) string {
	return `<wsse:Security xmlns:wsse="` + NSWSSE + `" soap:actor="` + ActorZIM + `" soap:mustUnderstand="1">` + strings.Join(tokens, "") + `</wsse:Security>`
}

func TestVerifyEnvelope(t *testing.T) {
	f := newBundleFixture(t)
	p := testPKI(t)
	enr, mdt, trx := string(f.enr.Bytes()), string(f.mdt.Bytes()), string(f.trxServer.Bytes())
	forged := strings.Replace(strings.Replace(trx, "999911120", "999912446", 1), `ID="trx_`, `ID="trx_evil`, 1)
	fs := forged[:strings.Index(forged, "<ds:Signature")] + forged[strings.Index(forged, "</ds:Signature>")+len("</ds:Signature>"):]
	body := `<GQZG_IN000001NL xmlns="urn:hl7-org:v3"/>`
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"valid", envelope(security(enr, mdt, trx), body), nil},
		{"order in header does not matter", envelope(security(trx, enr, mdt), body), nil},
		{"xsw3 forged assertion before the signed one", envelope(security(enr, mdt, fs, trx), body), ErrTokenCount},
		{"xsw after the valid one", envelope(security(enr, mdt, trx, fs), body), ErrTokenCount},
		{"xsw4 forged assertion wrapping the signed one", envelope(security(enr, mdt, strings.Replace(fs, "</saml:Assertion>", trx+"</saml:Assertion>", 1)), body), ErrTokenCount},
		{"xsw7 extensions element in header", envelope(security(enr, mdt, trx, `<ext:Extensions xmlns:ext="urn:x">`+fs+`</ext:Extensions>`), body), ErrSecurityHeader},
		{"assertion in the body", envelope(security(enr, mdt, trx), fs), ErrTokenCount},
		{"two zim security headers", envelope(security(enr, mdt, trx)+security(), body), ErrSecurityHeader},
		{"wrong actor", envelope(strings.Replace(security(enr, mdt, trx), ActorZIM, "urn:other", 1), body), ErrSecurityHeader},
		{"mustunderstand missing", envelope(strings.Replace(security(enr, mdt, trx), ` soap:mustUnderstand="1"`, "", 1), body), ErrSecurityHeader},
		{"two transaction tokens", envelope(security(enr, trx, strings.Replace(trx, `ID="trx_`, `ID="trx_2`, 1)), body), ErrTokenCount},
		{"duplicate ids across tokens", envelope(security(enr, mdt, strings.Replace(trx, f.trxServer.ID(), f.enr.ID(), 2)), body), ErrDuplicateID},
		{"signature profile still applies", envelope(security(enr, mdt, strings.Replace(trx, AlgRSASHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1", 1)), body), ErrAlgorithm},
		{"soap 1.2", []byte(strings.Replace(string(envelope(security(enr, mdt, trx), body)), NSSOAP, "http://www.w3.org/2003/05/soap-envelope", 1)), ErrSecurityHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := newTestValidator(t).VerifyEnvelope(context.Background(), tc.in, f.binding)
			if tc.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "999911120", res.Transaction.Transaction.BSN)
				return
			}
			assert.ErrorIs(t, err, tc.want, "got %v", err)
		})
	}
	t.Run("single token of a type", func(t *testing.T) {
		v := newTestValidator(t)
		got, err := v.VerifyInEnvelope(context.Background(), envelope(security(enr, trx), body), TypeEnrolment)
		require.NoError(t, err)
		assert.Equal(t, TypeEnrolment, got.Type)
		_, err = v.VerifyInEnvelope(context.Background(), envelope(security(enr, trx), body), TypeMandate)
		assert.ErrorIs(t, err, ErrTokenCount)
	})
	_ = p
	_ = time.Second
}
