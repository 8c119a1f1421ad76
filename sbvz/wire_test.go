package sbvz

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const fullAnswer = `<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <OpvragenVerifierenResponse xmlns="http://CIBG.SBV.Interface.XIS.Webservice/mrt21">
      <OpvragenVerifierenAntwoordBericht>
        <Vraag><Persoon><Geslachtsnaam>Vries</Geslachtsnaam><Geboortedatum>19700101</Geboortedatum><Geslachtsaanduiding>M</Geslachtsaanduiding></Persoon></Vraag>
        <Antwoord>
          <Persoon>
            <BSN>999900109</BSN>
            <Voornamen Afwijkend="false">Jan Pieter</Voornamen>
            <Voorletter Afwijkend="false">J</Voorletter>
            <AdellijkeTitelPredikaat>JH</AdellijkeTitelPredikaat>
            <VoorvoegselGeslachtsnaam Afwijkend="false">de</VoorvoegselGeslachtsnaam>
            <Geslachtsnaam Afwijkend="true">Vries</Geslachtsnaam>
            <Geboortedatum Afwijkend="false">19700101</Geboortedatum>
            <Geboorteplaats Afwijkend="false">Amsterdam</Geboorteplaats>
            <Geboorteland Afwijkend="false">Nederland</Geboorteland>
            <Geslachtsaanduiding Afwijkend="false">M</Geslachtsaanduiding>
            <AanduidingGegevensInOnderzoekPersoon>Geboortedatum is in onderzoek</AanduidingGegevensInOnderzoekPersoon>
            <DatumIngangOnderzoekPersoon>20240101</DatumIngangOnderzoekPersoon>
          </Persoon>
          <Adres>
            <GemeenteVanInschrijving Afwijkend="false">Amsterdam</GemeenteVanInschrijving>
            <FunctieAdres>woonadres</FunctieAdres>
            <Straatnaam Afwijkend="true">Keizersgracht</Straatnaam>
            <Huisnummer Afwijkend="false">10</Huisnummer>
            <Huisletter Afwijkend="false"></Huisletter>
            <AanduidingBijHuisnummer Afwijkend="false">tot</AanduidingBijHuisnummer>
            <Postcode Afwijkend="false">1015CN</Postcode>
            <Woonplaatsnaam>Amsterdam</Woonplaatsnaam>
            <Regel1AdresBuitenland/>
          </Adres>
          <Inschrijving><IndicatieGeheim>Geen beperking</IndicatieGeheim></Inschrijving>
          <Overlijden><DatumOverlijden>20250100</DatumOverlijden></Overlijden>
        </Antwoord>
        <Resultaat>A</Resultaat>
        <Melding Soort="G" Code="23002">BSN gevonden, maar met afwijkende gegevens</Melding>
        <Melding Soort="W" Code="SX04">Voornamen voldoet niet aan het formaat</Melding>
        <LokaalKenmerk>ref-1</LokaalKenmerk>
      </OpvragenVerifierenAntwoordBericht>
    </OpvragenVerifierenResponse>
  </soap:Body>
</soap:Envelope>`

func TestParseFullAnswer(t *testing.T) {
	r, err := parseVerifyResponse([]byte(fullAnswer), 0)
	require.NoError(t, err)
	assert.Equal(t, OutcomeDeviating, r.Outcome)
	assert.Equal(t, "999900109", r.BSN)
	assert.Equal(t, "ref-1", r.LocalRef)
	assert.Equal(t, []string{"Persoon/Geslachtsnaam", "Adres/Straatnaam"}, r.Deviating())
	assert.Equal(t, "Woonadres", r.Address.Function)
	assert.Equal(t, "to", r.Address.Designation.Value)
	assert.Equal(t, "JH", r.Person.NobleTitle)
	require.NotNil(t, r.Deceased)
	assert.Equal(t, Date{2025, 1, 0}, *r.Deceased)
	assert.Equal(t, []string{"23002", "SX04"}, r.Codes())
	assert.True(t, r.InOnderzoek())
}

func TestParseRefusesBadAnswers(t *testing.T) {
	repl := func(old, new string) string {
		require.Contains(t, fullAnswer, old)
		return strings.Replace(fullAnswer, old, new, 1)
	}
	failed := `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><OpvragenVerifierenResponse xmlns="http://CIBG.SBV.Interface.XIS.Webservice/mrt21"><OpvragenVerifierenAntwoordBericht>%s<Resultaat>F</Resultaat><Melding Soort="%s" Code="23001">Geen resultaat</Melding><LokaalKenmerk>r</LokaalKenmerk></OpvragenVerifierenAntwoordBericht></OpvragenVerifierenResponse></soap:Body></soap:Envelope>`
	tests := []struct{ name, body string }{
		{"doctype", repl(`<?xml version="1.0" encoding="utf-8"?>`, `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>`)},
		{"other encoding", repl(`encoding="utf-8"`, `encoding="iso-8859-1"`)},
		{"processing instruction", repl(`<soap:Body>`, `<soap:Body><?php x?>`)},
		{"duplicate element", repl(`<BSN>999900109</BSN>`, `<BSN>999900109</BSN><BSN>999900201</BSN>`)},
		{"unknown element", repl(`<Woonplaatsnaam>`, `<Verzonnen>x</Verzonnen><Woonplaatsnaam>`)},
		{"foreign namespace", repl(`<Woonplaatsnaam>Amsterdam</Woonplaatsnaam>`, `<Woonplaatsnaam xmlns="urn:x">Amsterdam</Woonplaatsnaam>`)},
		{"wrong version namespace", strings.ReplaceAll(fullAnswer, "/mrt21", "/dec14")},
		{"bsn fails eleven-test", repl(`<BSN>999900109</BSN>`, `<BSN>999900108</BSN>`)},
		{"missing Afwijkend", repl(`<Voorletter Afwijkend="false">`, `<Voorletter>`)},
		{"bad Afwijkend", repl(`<Voorletter Afwijkend="false">`, `<Voorletter Afwijkend="maybe">`)},
		{"unknown resultaat", repl(`<Resultaat>A</Resultaat>`, `<Resultaat>X</Resultaat>`)},
		{"G without G melding", repl(`Soort="G" Code="23002"`, `Soort="W" Code="23002"`)},
		{"found with F melding", repl(`Soort="W" Code="SX04"`, `Soort="F" Code="SX04"`)},
		{"no lokaalkenmerk", repl(`<LokaalKenmerk>ref-1</LokaalKenmerk>`, ``)},
		{"long lokaalkenmerk", repl(`ref-1`, strings.Repeat("r", 51))},
		{"bad melding code", repl(`Code="SX04"`, `Code="SX04!!"`)},
		{"mixed content", repl(`<Inschrijving>`, `<Inschrijving>text`)},
		{"unknown geheim", repl(`Geen beperking`, `Soms`)},
		{"bad postcode", repl(`1015CN</Postcode>`, `1015 CN</Postcode>`)},
		{"bad date", repl(`<DatumOverlijden>20250100`, `<DatumOverlijden>20251340`)},
		{"two roots", fullAnswer + "<x/>"},
		{"undeclared prefix", repl(`<Resultaat>A</Resultaat>`, `<q:Resultaat>A</q:Resultaat>`)},
		{"too large", fullAnswer + strings.Repeat(" ", defaultMaxBytes)},
		{"too deep", repl(`<Regel1AdresBuitenland/>`, strings.Repeat("<a>", 20)+strings.Repeat("</a>", 20))},
		{"F with answer data", strings.Replace(failed, "%s", `<Antwoord/>`, 1)},
		{"F without F melding", strings.Replace(strings.Replace(failed, "%s", "", 1), "%s", "W", 1)},
		{"not soap", `<html><body>error</body></html>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseVerifyResponse([]byte(tc.body), 0)
			require.ErrorIs(t, err, ErrProtocol)
		})
	}
	ok := strings.Replace(strings.Replace(failed, "%s", "", 1), "%s", "F", 1)
	r, err := parseVerifyResponse([]byte(ok), 0)
	require.NoError(t, err)
	assert.Equal(t, OutcomeFailed, r.Outcome)
}

func TestBuildRequestShape(t *testing.T) {
	q := Query{Person: Person{BSN: TestBSN(1), Surname: "Vries & Zn <x>", BirthDate: "19700101", Sex: "M"}, Address: Address{PostalCode: "1015CN", HouseNumber: "10"}}
	b := buildVerifyRequest(q, "ref")
	want := `<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>` +
		`<OpvragenVerifieren xmlns="http://CIBG.SBV.Interface.XIS.Webservice/mrt21"><OpvragenVerifierenVraagBericht><Vraag>` +
		`<Persoon><BSN>` + TestBSN(1) + `</BSN><Geslachtsnaam>Vries &amp; Zn &lt;x&gt;</Geslachtsnaam><Geboortedatum>19700101</Geboortedatum><Geslachtsaanduiding>M</Geslachtsaanduiding></Persoon>` +
		`<Adres><Huisnummer>10</Huisnummer><Postcode>1015CN</Postcode></Adres></Vraag><LokaalKenmerk>ref</LokaalKenmerk>` +
		`</OpvragenVerifierenVraagBericht></OpvragenVerifieren></soap:Body></soap:Envelope>`
	assert.Equal(t, want, string(b))
	q.Address = Address{}
	assert.NotContains(t, string(buildVerifyRequest(q, "ref")), "<Adres>")
	assert.Contains(t, string(buildPersonDataRequest(TestBSN(1))), `<OpvragenPersoonsgegevens xmlns="http://CIBG.SBV.Interface.XIS.Webservice/dec14"><OpvragenPersoonsgegevensVraagBericht><Vraag><BSN>`)
}

func TestValidBSN(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", "999990019", true},
		{"valid 2", "111222333", true},
		{"check digit off", "999990018", false},
		{"eight digits", "99999001", false},
		{"letters", "99999001a", false},
		{"all zero", "000000000", false},
		{"ten digits", "9999900190", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.ok, ValidBSN(tc.in)) })
	}
	for i := 0; i < 900; i++ {
		require.True(t, ValidBSN(TestBSN(i)), "TestBSN(%d)", i)
	}
}

// TestSimulatorStrictness sends hand-made requests the real service would
// refuse.
func TestSimulatorStrictness(t *testing.T) {
	pki := sharedPKI(t)
	sim, err := NewSimulator(SimConfig{Seed: 1})
	require.NoError(t, err)
	p := Persona("found")
	good := string(buildVerifyRequest(path2(p), "ref"))
	send := func(path, action, ctype, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("SOAPAction", action)
		r.Header.Set("Content-Type", ctype)
		r.TLS = &tls.ConnectionState{PeerCertificates: pki.client.chain()}
		w := httptest.NewRecorder()
		sim.ServeHTTP(w, r)
		return w
	}
	act := `"` + ActionVerify + `"`
	const xmlCT = "text/xml; charset=utf-8"
	tests := []struct {
		name, path, action, ctype, body string
		status                          int
		contains                        string
	}{
		{"good", PathVerify, act, xmlCT, good, 200, `<Resultaat>G</Resultaat>`},
		{"unquoted soapaction", PathVerify, ActionVerify, xmlCT, good, 500, "soap:Client"},
		{"wrong soapaction", PathVerify, `"` + ActionPersonData + `"`, xmlCT, good, 500, "SOAPAction"},
		{"soap 1.2 content type", PathVerify, act, "application/soap+xml", good, 415, ""},
		{"wrong namespace", PathVerify, act, xmlCT, strings.Replace(good, "/mrt21", "/dec14", 1), 500, "soap:Client"},
		{"out of order", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsnaam>Vries</Geslachtsnaam><Geboortedatum>19700101</Geboortedatum>", "<Geboortedatum>19700101</Geboortedatum><Geslachtsnaam>Vries</Geslachtsnaam>", 1), 500, "out of order"},
		{"empty element", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsaanduiding>M", "<Voorletter></Voorletter><Geslachtsaanduiding>M", 1), 500, "out of order"},
		{"empty element in order", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsnaam>", "<Voorletter></Voorletter><Geslachtsnaam>", 1), 500, "is empty"},
		{"long lokaalkenmerk", PathVerify, act, xmlCT, strings.Replace(good, ">ref<", ">"+strings.Repeat("k", 51)+"<", 1), 500, "LokaalKenmerk longer"},
		{"no lokaalkenmerk", PathVerify, act, xmlCT, strings.Replace(good, "<LokaalKenmerk>ref</LokaalKenmerk>", "", 1), 500, "LokaalKenmerk is required"},
		{"doctype", PathVerify, act, xmlCT, strings.Replace(good, "?>", "?><!DOCTYPE x>", 1), 500, "soap:Client"},
		{"incomplete path", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsnaam>Vries</Geslachtsnaam>", "", 1), 200, `Code="SIM01"`},
		{"eleven-test", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsnaam>", "<BSN>123456789</BSN><Geslachtsnaam>", 1), 200, `Code="SIM02"`},
		{"unknown element", PathVerify, act, xmlCT, strings.Replace(good, "<Geslachtsaanduiding>M</Geslachtsaanduiding>", "<Geslachtsaanduiding>M</Geslachtsaanduiding></Persoon><Adres><Postcode>1015 CN</Postcode></Adres><Persoon2>", 1), 500, "soap:Client"},
		{"unknown path", "/other.asmx", act, xmlCT, good, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := send(tc.path, tc.action, tc.ctype, tc.body)
			assert.Equal(t, tc.status, w.Code, w.Body.String())
			assert.Contains(t, w.Body.String(), tc.contains)
		})
	}
	t.Run("sx04 on a malformed optional field", func(t *testing.T) {
		q := path2(p)
		body := strings.Replace(string(buildVerifyRequest(q, "ref")), "</Persoon>", "</Persoon><Adres><Postcode>1015 CN</Postcode></Adres>", 1)
		w := send(PathVerify, act, xmlCT, body)
		assert.Equal(t, 200, w.Code)
		r, err := parseVerifyResponse(w.Body.Bytes(), 0)
		require.NoError(t, err)
		assert.Equal(t, OutcomeFound, r.Outcome)
		assert.Equal(t, []string{CodeFound, CodeFormat}, r.Codes())
	})
}
