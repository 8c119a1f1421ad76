package sbvz

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

// seeds adds seed answers of one kind ("verify", "persondata", "document",
// "appointment"); small per-target corpora keep minimisation quick.
func seeds(f *testing.F, kind string) {
	sim, err := NewSimulator(SimConfig{Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	fault := []byte(`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>x</faultstring></soap:Fault></soap:Body></soap:Envelope>`)
	f.Add(fault)
	switch kind {
	case "verify", "persondata":
		if kind == "verify" {
			f.Add([]byte(fullAnswer))
		}
		for _, key := range []string{"found", "deceased", "non-resident"} {
			p := Persona(key)
			a := &verifyAnswer{ns: NSVerify, op: "OpvragenVerifieren", ref: "r", q: path2(p), person: sim.byBSN[p.BSN], outcome: OutcomeFound,
				messages: []Melding{{"G", CodeFound, "BSN gevonden"}}}
			if kind == "persondata" {
				a.ns, a.op, a.bsnOnly = NSPersonData, "OpvragenPersoonsgegevens", true
			}
			f.Add(a.render())
		}
	case "document":
		f.Add(renderProposal(NSDocument, "ControleIdentiteitsdocument", "<Antwoord><Documentnummer>NXC4R7T18</Documentnummer><SoortDocument>P</SoortDocument><StatusDocument>Gestolen</StatusDocument><DatumEindeGeldigheid>20290101</DatumEindeGeldigheid></Antwoord>", OutcomeFound, []Melding{{"G", "WD001", "x"}}, "r"))
		f.Add(renderProposal(NSDocument, "ControleIdentiteitsdocument", "", OutcomeFailed, []Melding{{"F", "WD002", "x"}}, "r"))
	case "appointment":
		f.Add(renderProposal(NSAppointment, "AfspraakAanmaken", "<Antwoord><AfspraakKenmerk>A1</AfspraakKenmerk></Antwoord>", OutcomeFound, []Melding{{"G", "AF001", "x"}}, "r"))
		f.Add(renderProposal(NSAppointment, "AfspraakVerwijderen", "", OutcomeFailed, []Melding{{"F", "AF404", "x"}}, "r"))
	}
}

// FuzzParseVerifyResponse checks the OpvragenVerifieren parser never panics
// and that what it accepts is internally consistent.
func FuzzParseVerifyResponse(f *testing.F) {
	seeds(f, "verify")
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseVerifyResponse(b, 0)
		if err != nil {
			return
		}
		if r.LocalRef == "" || len(r.Messages) == 0 {
			t.Fatalf("accepted answer without lokaalkenmerk or meldingen")
		}
		if r.Outcome != OutcomeFailed && !ValidBSN(r.BSN) {
			t.Fatalf("accepted %s answer with bsn %q", r.Outcome, r.BSN)
		}
		if r.Outcome == OutcomeFailed && (r.Person != nil || r.Address != nil) {
			t.Fatalf("accepted F answer with data")
		}
	})
}

// FuzzParsePersonDataResponse fuzzes the OpvragenPersoonsgegevens parser.
func FuzzParsePersonDataResponse(f *testing.F) {
	seeds(f, "persondata")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePersonDataResponse(b, 0)
		if err == nil && r.Outcome != OutcomeFailed && !ValidBSN(r.BSN) {
			t.Fatalf("accepted answer with bsn %q", r.BSN)
		}
	})
}

// FuzzParseDocumentResponse fuzzes the proposed WID answer parser.
func FuzzParseDocumentResponse(f *testing.F) {
	seeds(f, "document")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDocumentResponse(b, 0)
		if err == nil && d.Outcome == OutcomeFound && !docStatuses[d.Status] {
			t.Fatalf("accepted unknown status %q", d.Status)
		}
	})
}

// FuzzParseAppointmentResponse fuzzes the proposed afspraak answer parser.
func FuzzParseAppointmentResponse(f *testing.F) {
	seeds(f, "appointment")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseProposalAnswer(b, 0, NSAppointment, "AfspraakAanmaken", []string{"AfspraakKenmerk"})
		_, _ = parseProposalAnswer(b, 0, NSAppointment, "AfspraakVerwijderen", nil)
	})
}

// FuzzSimulatorRequest fuzzes the simulator's request parsing (its input is
// untrusted too when it runs as `aortagw sim sbvz`).
func FuzzSimulatorRequest(f *testing.F) {
	f.Add(buildVerifyRequest(path2(Persona("found")), "r"), 0)
	f.Add(buildPersonDataRequest(TestBSN(1)), 1)
	f.Add(buildDocumentRequest(DocumentQuery{"NXC4R7T18", DocPassport}, "r"), 2)
	f.Add(buildCreateAppointmentRequest(3, "x", "r"), 3)
	f.Add(buildDeleteAppointmentRequest("AFS-000001", "r"), 4)
	pki := sharedPKI(f)
	sim, err := NewSimulator(SimConfig{Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	routes := []struct{ path, action string }{
		{PathVerify, ActionVerify}, {PathPersonData, ActionPersonData}, {PathDocument, ActionDocument},
		{PathAppointment, ActionCreateAppointment}, {PathAppointment, ActionDeleteAppointment},
	}
	chain := pki.client.chain()
	f.Fuzz(func(t *testing.T, body []byte, route int) {
		if route < 0 {
			route = -route
		}
		rt := routes[route%len(routes)]
		r := httptest.NewRequest(http.MethodPost, rt.path, bytes.NewReader(body))
		r.Header.Set("SOAPAction", `"`+rt.action+`"`)
		r.Header.Set("Content-Type", "text/xml; charset=utf-8")
		r.TLS = &tls.ConnectionState{PeerCertificates: chain}
		w := httptest.NewRecorder()
		sim.ServeHTTP(w, r)
		if w.Code == http.StatusOK && rt.path == PathVerify {
			if _, err := parseVerifyResponse(w.Body.Bytes(), 0); err != nil {
				t.Fatalf("simulator answered something the client refuses: %v\n%s", err, w.Body.String())
			}
		}
	})
}

// FuzzReadFillCSV fuzzes the initial-fill input reader.
func FuzzReadFillCSV(f *testing.F) {
	f.Add([]byte(fillCSV([][]string{row("a", Persona("found"), 1, true)})))
	f.Add([]byte("id;geslachtsnaam;geboortedatum\n1;Vries;01-01-1970\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := readFillCSV(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range rows {
			if r.id == "" || seen[r.id] {
				t.Fatalf("accepted empty or duplicate id %q", r.id)
			}
			seen[r.id] = true
		}
	})
}
