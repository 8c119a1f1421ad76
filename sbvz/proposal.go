package sbvz

import (
	"fmt"
	"strconv"
)

// The WID check and the initial-fill afspraak have no public message shapes.
// What follows is OUR PROPOSAL, built in the same style as OpvragenVerifieren
// (…VraagBericht{Vraag, LokaalKenmerk} / …AntwoordBericht{Antwoord, Resultaat,
// Melding*, LokaalKenmerk}) in namespaces of our own (NSDocument,
// NSAppointment). Replace when CIBG's WSDLs are in hand; docs/sbvz.md.

// DocumentKind is SoortDocument in the proposed WID check.
type DocumentKind string

// Document kinds.
const (
	DocPassport       DocumentKind = "P" // paspoort
	DocIDCard         DocumentKind = "I" // Nederlandse identiteitskaart
	DocDrivingLicence DocumentKind = "R" // rijbewijs
	DocResidence      DocumentKind = "V" // verblijfsdocument
)

// DocumentStatus is StatusDocument in the proposed WID check answer.
type DocumentStatus string

// Document statuses. Only DocValid means the document may be used.
const (
	DocValid    DocumentStatus = "Geldig"
	DocExpired  DocumentStatus = "Verlopen"
	DocStolen   DocumentStatus = "Gestolen"
	DocMissing  DocumentStatus = "Vermist"
	DocRevoked  DocumentStatus = "Ingetrokken"
	DocUnknown  DocumentStatus = "Onbekend"
	maxDocument                = 20
)

var docStatuses = map[DocumentStatus]bool{DocValid: true, DocExpired: true, DocStolen: true, DocMissing: true, DocRevoked: true, DocUnknown: true}

// DocumentQuery is one ControleIdentiteitsdocument question.
type DocumentQuery struct {
	Number string       // Documentnummer, 1-20 capitals and digits
	Kind   DocumentKind // SoortDocument
}

// Validate checks the question before sending.
func (q DocumentQuery) Validate() error {
	if q.Number == "" || len(q.Number) > maxDocument {
		return fmt.Errorf("%w: documentnummer must be 1-%d characters", ErrInvalidQuery, maxDocument)
	}
	for i := 0; i < len(q.Number); i++ {
		c := q.Number[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("%w: documentnummer must be capitals and digits", ErrInvalidQuery)
		}
	}
	switch q.Kind {
	case DocPassport, DocIDCard, DocDrivingLicence, DocResidence:
	default:
		return fmt.Errorf("%w: soortdocument must be P, I, R or V (value=%q)", ErrInvalidQuery, clip(string(q.Kind)))
	}
	return nil
}

// DocumentResult is the typed answer of the WID check.
type DocumentResult struct {
	Outcome    Outcome        `json:"resultaat"`
	LocalRef   string         `json:"lokaal_kenmerk"`
	Number     string         `json:"documentnummer"`
	Kind       DocumentKind   `json:"soort_document"`
	Status     DocumentStatus `json:"status"`
	ValidUntil string         `json:"datum_einde_geldigheid,omitempty"` // DatumEindeGeldigheid, yyyyMMdd, "" when not given
	Messages   []Melding      `json:"meldingen"`
}

// Usable reports whether the document was found in circulation and valid.
func (d *DocumentResult) Usable() bool { return d.Outcome == OutcomeFound && d.Status == DocValid }

func buildDocumentRequest(q DocumentQuery, ref string) []byte {
	return envelope(NSDocument, "ControleIdentiteitsdocument", func(w *xmlWriter) {
		w.open("ControleIdentiteitsdocumentVraagBericht")
		w.open("Vraag")
		w.leaf("Documentnummer", q.Number)
		w.leaf("SoortDocument", string(q.Kind))
		w.close("Vraag")
		w.leaf("LokaalKenmerk", ref)
		w.close("ControleIdentiteitsdocumentVraagBericht")
	})
}

func buildCreateAppointmentRequest(expected int, description, ref string) []byte {
	return envelope(NSAppointment, "AfspraakAanmaken", func(w *xmlWriter) {
		w.open("AfspraakAanmakenVraagBericht")
		w.open("Vraag")
		w.leaf("AantalVerzoeken", strconv.Itoa(expected))
		w.leaf("Omschrijving", description)
		w.close("Vraag")
		w.leaf("LokaalKenmerk", ref)
		w.close("AfspraakAanmakenVraagBericht")
	})
}

func buildDeleteAppointmentRequest(id, ref string) []byte {
	return envelope(NSAppointment, "AfspraakVerwijderen", func(w *xmlWriter) {
		w.open("AfspraakVerwijderenVraagBericht")
		w.open("Vraag")
		w.leaf("AfspraakKenmerk", id)
		w.close("Vraag")
		w.leaf("LokaalKenmerk", ref)
		w.close("AfspraakVerwijderenVraagBericht")
	})
}

// proposalAnswer is the common frame of the proposed answers.
type proposalAnswer struct {
	outcome  Outcome
	localRef string
	messages []Melding
	answer   map[string][]*node // children of Antwoord; nil when absent
}

func parseProposalAnswer(b []byte, maxBytes int, ns, op string, answerNames []string) (*proposalAnswer, error) {
	el, err := soapBody(b, maxBytes)
	if err != nil {
		if _, ok := err.(*FaultError); ok {
			return nil, err
		}
		return nil, protoErr("%v", err)
	}
	if !el.is(ns, op+"Response") || len(el.kids) != 1 || !el.kids[0].is(ns, op+"AntwoordBericht") {
		return nil, protoErr("expected %sResponse/%sAntwoordBericht in namespace %s", op, op, ns)
	}
	k, err := shape{ns: ns, names: []string{"Antwoord", "Resultaat", "Melding", "LokaalKenmerk"}, repeated: map[string]bool{"Melding": true}}.check(el.kids[0])
	if err != nil {
		return nil, protoErr("%v", err)
	}
	pa := &proposalAnswer{}
	res, err := text(first(k, "Resultaat"), 1)
	if err != nil {
		return nil, err
	}
	pa.outcome = Outcome(res)
	if pa.messages, err = parseMeldingen(k["Melding"]); err != nil {
		return nil, err
	}
	if pa.localRef, err = text(first(k, "LokaalKenmerk"), maxLocalRef); err != nil {
		return nil, err
	}
	if pa.localRef == "" {
		return nil, protoErr("answer without lokaalkenmerk")
	}
	if a := first(k, "Antwoord"); a != nil {
		if pa.answer, err = (shape{ns: ns, names: answerNames}).check(a); err != nil {
			return nil, protoErr("%v", err)
		}
		for _, list := range pa.answer {
			if _, err := text(list[0], 100); err != nil {
				return nil, err
			}
		}
	}
	var g, f bool
	for _, m := range pa.messages {
		g, f = g || m.Soort == "G", f || m.Soort == "F"
	}
	switch pa.outcome {
	case OutcomeFailed:
		if !f || pa.answer != nil {
			return nil, protoErr("resultaat F inconsistent")
		}
	case OutcomeFound:
		if f || !g {
			return nil, protoErr("resultaat G inconsistent")
		}
	default:
		return nil, protoErr("resultaat %q not allowed here", clip(string(pa.outcome)))
	}
	return pa, nil
}

func parseDocumentResponse(b []byte, maxBytes int) (*DocumentResult, error) {
	pa, err := parseProposalAnswer(b, maxBytes, NSDocument, "ControleIdentiteitsdocument",
		[]string{"Documentnummer", "SoortDocument", "StatusDocument", "DatumEindeGeldigheid"})
	if err != nil {
		return nil, err
	}
	d := &DocumentResult{Outcome: pa.outcome, LocalRef: pa.localRef, Messages: pa.messages}
	if pa.outcome == OutcomeFailed {
		return d, nil
	}
	if pa.answer == nil {
		return nil, protoErr("resultaat G without antwoord")
	}
	d.Number, _ = text(first(pa.answer, "Documentnummer"), maxDocument)
	kind, _ := text(first(pa.answer, "SoortDocument"), 1)
	d.Kind = DocumentKind(kind)
	st, _ := text(first(pa.answer, "StatusDocument"), 20)
	d.Status = DocumentStatus(st)
	if !docStatuses[d.Status] {
		return nil, protoErr("statusdocument %q unknown", clip(st))
	}
	if d.ValidUntil, err = optDate(first(pa.answer, "DatumEindeGeldigheid")); err != nil {
		return nil, err
	}
	return d, nil
}
