package sbvz

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aortagw/aortagw/internal/mtls"
)

// SimConfig configures a Simulator.
type SimConfig struct {
	// Persons is the register; default Dataset(Seed, 40).
	Persons []SimPerson
	// Documents is the WID register; default SimDocuments().
	Documents []SimDocument
	Seed      int64
	// SlowDelay is how long FaultSlow persons take; default 3s.
	SlowDelay time.Duration
	// MaxRequestBytes caps a request body; default 64 KiB.
	MaxRequestBytes int
	Logger          *slog.Logger
	Now             func() time.Time
	NewID           func() string // afspraak ids; default a counter
}

// Record is what the simulator saw of one request (recorded once the SOAP
// body parsed, whatever the answer).
type Record struct {
	Time      time.Time
	Operation string // OpvragenVerifieren, OpvragenPersoonsgegevens, ControleIdentiteitsdocument, AfspraakAanmaken, AfspraakVerwijderen
	ClientURA string
	LocalRef  string
	Query     Query         // OpvragenVerifieren question
	BSN       string        // OpvragenPersoonsgegevens question
	Document  DocumentQuery // WID question
	Outcome   string        // G, A, F, "fault", or "abandoned" (caller left before a slow answer)
	Codes     []string
}

// Simulator is a strict SBV-Z stand-in. It is safe for concurrent use.
type Simulator struct {
	cfg     SimConfig
	log     *slog.Logger
	byBSN   map[string]*SimPerson
	persons []*SimPerson
	docs    map[string]SimDocument

	mu      sync.Mutex
	records []Record
	appts   map[string]bool
	seq     int
}

// NewSimulator builds a simulator from its register.
func NewSimulator(cfg SimConfig) (*Simulator, error) {
	if cfg.Persons == nil {
		cfg.Persons = Dataset(cfg.Seed, 40)
	}
	if cfg.Documents == nil {
		cfg.Documents = SimDocuments()
	}
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 3 * time.Second
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Simulator{cfg: cfg, log: cfg.Logger, byBSN: map[string]*SimPerson{}, docs: map[string]SimDocument{}, appts: map[string]bool{}}
	for i := range cfg.Persons {
		p := &cfg.Persons[i]
		if !ValidBSN(p.BSN) {
			return nil, fmt.Errorf("sbvz: simulator person %s has an invalid bsn", p.Key)
		}
		if _, dup := s.byBSN[p.BSN]; dup {
			return nil, fmt.Errorf("sbvz: simulator person %s has a duplicate bsn", p.Key)
		}
		s.byBSN[p.BSN] = p
		s.persons = append(s.persons, p)
	}
	for _, d := range cfg.Documents {
		s.docs[string(d.Kind)+"/"+d.Number] = d
	}
	return s, nil
}

// TLSConfig returns the server TLS configuration: cert is the simulator's
// server certificate, clientCAs the UZI server CA(s); only a type-S UZI
// certificate with clientAuth is accepted.
func (s *Simulator) TLSConfig(cert tls.Certificate, clientCAs []*x509.Certificate) (*tls.Config, error) {
	return mtls.ServerConfig(cert, clientCAs, func(leaf *x509.Certificate) error {
		_, err := uziServerIdentity(leaf)
		return err
	})
}

// Records returns a copy of every request recorded so far.
func (s *Simulator) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

func (s *Simulator) record(r Record) {
	s.mu.Lock()
	s.records = append(s.records, r)
	s.mu.Unlock()
}

type simOp struct {
	ns, name, action string
}

var simRoutes = map[string]simOp{
	PathVerify:      {NSVerify, "OpvragenVerifieren", ActionVerify},
	PathPersonData:  {NSPersonData, "OpvragenPersoonsgegevens", ActionPersonData},
	PathDocument:    {NSDocument, "ControleIdentiteitsdocument", ActionDocument},
	PathAppointment: {NSAppointment, "", ""}, // two operations, told apart by SOAPAction
}

// soapFault writes a SOAP 1.1 fault.
func soapFault(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="` + NSSoap + `"><soap:Body><soap:Fault><faultcode>`)
	b.WriteString(code)
	b.WriteString(`</faultcode><faultstring>`)
	_ = xmlEscape(&b, msg)
	b.WriteString(`</faultstring></soap:Fault></soap:Body></soap:Envelope>`)
	_, _ = io.WriteString(w, b.String())
}

func xmlEscape(b *strings.Builder, s string) error { return xml.EscapeText(b, []byte(s)) }

// clientError is a protocol error that the real service answers with soap:Client.
type clientError struct{ msg string }

func (e *clientError) Error() string { return e.msg }

func clientErr(format string, args ...any) error { return &clientError{fmt.Sprintf(format, args...)} }

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		soapFault(w, http.StatusForbidden, "soap:Client", "client certificate required")
		return
	}
	ura, err := uziServerIdentity(r.TLS.PeerCertificates[0])
	if err != nil {
		soapFault(w, http.StatusForbidden, "soap:Client", "client certificate refused")
		return
	}
	route, ok := simRoutes[strings.ToLower(r.URL.Path)]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "text/xml" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		http.Error(w, "unsupported media type: SOAP 1.1 needs text/xml; charset=utf-8", http.StatusUnsupportedMediaType)
		return
	}
	action := r.Header.Get("SOAPAction")
	if route.action == "" {
		switch action {
		case `"` + ActionCreateAppointment + `"`:
			route.name, route.action = "AfspraakAanmaken", ActionCreateAppointment
		case `"` + ActionDeleteAppointment + `"`:
			route.name, route.action = "AfspraakVerwijderen", ActionDeleteAppointment
		}
	}
	if action != `"`+route.action+`"` || route.action == "" {
		soapFault(w, http.StatusInternalServerError, "soap:Client", "Server did not recognize the value of HTTP Header SOAPAction: "+clip(action))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxRequestBytes)))
	if err != nil {
		soapFault(w, http.StatusRequestEntityTooLarge, "soap:Client", "request too large")
		return
	}
	el, err := soapBody(body, s.cfg.MaxRequestBytes)
	if err == nil && (!el.is(route.ns, route.name) || len(el.kids) != 1 || !el.kids[0].is(route.ns, route.name+"VraagBericht")) {
		err = clientErr("expected %s/%sVraagBericht in namespace %s", route.name, route.name, route.ns)
	}
	if err != nil {
		soapFault(w, http.StatusInternalServerError, "soap:Client", "invalid request: "+err.Error())
		return
	}
	rec := Record{Time: s.cfg.Now(), Operation: route.name, ClientURA: ura}
	var resp []byte
	var status = http.StatusOK
	switch route.name {
	case "OpvragenVerifieren":
		resp, status, err = s.verify(r, el.kids[0], &rec)
	case "OpvragenPersoonsgegevens":
		resp, status, err = s.personData(el.kids[0], &rec)
	case "ControleIdentiteitsdocument":
		resp, err = s.document(el.kids[0], &rec)
	default:
		resp, err = s.appointment(route.name, el.kids[0], &rec)
	}
	if errors.Is(err, errCallerGone) {
		rec.Outcome = "abandoned"
		s.record(rec)
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		rec.Outcome = "fault"
		s.record(rec)
		var ce *clientError
		if errors.As(err, &ce) {
			soapFault(w, http.StatusInternalServerError, "soap:Client", ce.msg)
			return
		}
		if errors.Is(err, errUnavailable) {
			http.Error(w, "<html><body>Service Unavailable</body></html>", http.StatusServiceUnavailable)
			return
		}
		soapFault(w, http.StatusInternalServerError, "soap:Server", "Server was unable to process request.")
		return
	}
	s.record(rec)
	s.log.Info("sbvz sim answer", "operation", rec.Operation, "lokaalkenmerk", rec.LocalRef, "resultaat", rec.Outcome, "codes", strings.Join(rec.Codes, ","))
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(resp)
}

var (
	errUnavailable = errors.New("unavailable")
	errServer      = errors.New("server error")
	errCallerGone  = errors.New("caller went away")
)

// readLeaves reads a question element strictly: schema order, no unknown or
// duplicate elements, no empty elements, no nested content.
func readLeaves(n *node, ns string, order []string) (map[string]string, error) {
	k, err := (shape{ns: ns, names: order, ordered: true}).check(n)
	if err != nil {
		return nil, clientErr("%v", err)
	}
	out := map[string]string{}
	for name, list := range k {
		e := list[0]
		if len(e.kids) > 0 {
			return nil, clientErr("element %s must hold text", name)
		}
		if e.text == "" {
			return nil, clientErr("element %s is empty (omit it instead)", name)
		}
		if len(e.text) > maxTransport {
			return nil, clientErr("element %s too long", name)
		}
		out[name] = e.text
	}
	return out, nil
}

// readFrame reads …VraagBericht{Vraag, LokaalKenmerk}.
func readFrame(msg *node, ns string, needRef bool) (*node, string, error) {
	names := []string{"Vraag"}
	if needRef {
		names = append(names, "LokaalKenmerk")
	}
	k, err := (shape{ns: ns, names: names, ordered: true}).check(msg)
	if err != nil {
		return nil, "", clientErr("%v", err)
	}
	vraag := first(k, "Vraag")
	if vraag == nil {
		return nil, "", clientErr("Vraag is required")
	}
	if !needRef {
		return vraag, "", nil
	}
	ref := first(k, "LokaalKenmerk")
	if ref == nil || len(ref.kids) > 0 || strings.TrimSpace(ref.text) == "" {
		return nil, "", clientErr("LokaalKenmerk is required")
	}
	if n := len([]rune(ref.text)); n > maxLocalRef {
		return nil, "", clientErr("LokaalKenmerk longer than %d characters", maxLocalRef)
	}
	return vraag, ref.text, nil
}

func (s *Simulator) verify(r *http.Request, msg *node, rec *Record) ([]byte, int, error) {
	vraag, ref, err := readFrame(msg, NSVerify, true)
	if err != nil {
		return nil, 0, err
	}
	rec.LocalRef = ref
	k, err := (shape{ns: NSVerify, names: []string{"Persoon", "Adres"}, ordered: true}).check(vraag)
	if err != nil {
		return nil, 0, clientErr("%v", err)
	}
	pn := first(k, "Persoon")
	if pn == nil {
		return nil, 0, clientErr("Vraag/Persoon is required")
	}
	pv, err := readLeaves(pn, NSVerify, personOrder)
	if err != nil {
		return nil, 0, err
	}
	av := map[string]string{}
	if an := first(k, "Adres"); an != nil {
		if av, err = readLeaves(an, NSVerify, addressOrder); err != nil {
			return nil, 0, err
		}
		if len(av) == 0 {
			return nil, 0, clientErr("Vraag/Adres is empty (omit it instead)")
		}
	}
	q := Query{
		Person: Person{BSN: pv["BSN"], GivenNames: pv["Voornamen"], Initial: pv["Voorletter"], SurnamePrefix: pv["VoorvoegselGeslachtsnaam"],
			Surname: pv["Geslachtsnaam"], BirthDate: pv["Geboortedatum"], BirthPlace: pv["Geboorteplaats"], BirthCountry: pv["Geboorteland"], Sex: pv["Geslachtsaanduiding"]},
		Address: Address{Municipality: av["GemeenteVanInschrijving"], Street: av["Straatnaam"], HouseNumber: av["Huisnummer"], HouseLetter: av["Huisletter"],
			HouseNumberSuffix: av["Huisnummertoevoeging"], Designation: av["AanduidingBijHuisnummer"], PostalCode: av["Postcode"]},
	}
	rec.Query = q
	answer := &verifyAnswer{ns: NSVerify, op: "OpvragenVerifieren", ref: ref, q: q}

	// Format checks: an unusable field is dropped with an SX04 warning.
	var warn []Melding
	drop := func(field string, ok bool, clear func()) {
		if !ok {
			warn = append(warn, Melding{"W", CodeFormat, field + " voldoet niet aan het formaat"})
			clear()
		}
	}
	qq := &answer.q
	drop("Voornamen", len([]rune(qq.Person.GivenNames)) <= maxGivenNames, func() { qq.Person.GivenNames = "" })
	drop("Geslachtsnaam", len([]rune(qq.Person.Surname)) <= maxSurname, func() { qq.Person.Surname = "" })
	drop("Postcode", qq.Address.PostalCode == "" || ValidPostalCode(qq.Address.PostalCode), func() { qq.Address.PostalCode = "" })
	drop("Huisnummer", qq.Address.HouseNumber == "" || (len(qq.Address.HouseNumber) <= 5 && allDigits(qq.Address.HouseNumber)), func() { qq.Address.HouseNumber = "" })
	_, derr := ParseDate(qq.Person.BirthDate)
	drop("Geboortedatum", qq.Person.BirthDate == "" || derr == nil, func() { qq.Person.BirthDate = "" })
	drop("Geslachtsaanduiding", qq.Person.Sex == "" || qq.Person.Sex == "M" || qq.Person.Sex == "V" || qq.Person.Sex == "O", func() { qq.Person.Sex = "" })

	fail := func(code, text string) ([]byte, int, error) {
		answer.outcome, answer.messages = OutcomeFailed, append([]Melding{{"F", code, text}}, warn...)
		rec.Outcome, rec.Codes = "F", codesList(answer.messages)
		return answer.render(), http.StatusOK, nil
	}
	if q.Person.BSN != "" && !ValidBSN(q.Person.BSN) {
		return fail("SIM02", "BSN voldoet niet aan de elfproef")
	}
	p1 := qq.Person.BirthDate != "" && qq.Person.Sex != "" && qq.Address.PostalCode != "" && qq.Address.HouseNumber != ""
	p2 := qq.Person.BirthDate != "" && qq.Person.Sex != "" && qq.Person.Surname != ""
	if !p1 && !p2 {
		return fail("SIM01", "Zoekpad onvolledig: geef geboortedatum, geslacht en geslachtsnaam, of geboortedatum, geslacht, postcode en huisnummer")
	}
	var cands []*SimPerson
	for _, p := range s.persons {
		if p.BirthDate != qq.Person.BirthDate || p.Sex != qq.Person.Sex {
			continue
		}
		if p2 && strings.EqualFold(p.Surname, qq.Person.Surname) {
			cands = append(cands, p)
		} else if !p2 && p.Address != nil && p.Address.PostalCode == qq.Address.PostalCode && strings.TrimLeft(p.Address.HouseNumber, "0") == strings.TrimLeft(qq.Address.HouseNumber, "0") {
			cands = append(cands, p)
		}
	}
	if q.Person.BSN != "" {
		var hit *SimPerson
		for _, c := range cands {
			if c.BSN == q.Person.BSN {
				hit = c
			}
		}
		if hit == nil {
			return fail(CodeNotFound, "Geen resultaat gevonden")
		}
		cands = []*SimPerson{hit}
	}
	switch len(cands) {
	case 0:
		return fail(CodeNotFound, "Geen resultaat gevonden")
	case 1:
	default:
		return fail(CodeNotUnique, "Vraag heeft niet tot één persoon geleid")
	}
	p := cands[0]
	if err := s.applyFault(r, p, answer); err != nil {
		return nil, 0, err
	}
	answer.person = p
	answer.outcome = OutcomeFound
	text := "BSN gevonden"
	if answer.anyDeviation() {
		answer.outcome = OutcomeDeviating
		text = "BSN gevonden, maar met afwijkende gegevens"
	}
	answer.messages = append([]Melding{{"G", CodeFound, text}}, warn...)
	rec.Outcome, rec.Codes = string(answer.outcome), codesList(answer.messages)
	return answer.render(), http.StatusOK, nil
}

func (s *Simulator) applyFault(r *http.Request, p *SimPerson, a *verifyAnswer) error {
	switch p.Fault {
	case FaultSlow:
		t := time.NewTimer(s.cfg.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The caller gave up: like a real server past its client's
			// deadline, send nothing rather than a late answer.
			return errCallerGone
		}
	case FaultServerError:
		return errServer
	case FaultUnavailable:
		return errUnavailable
	case FaultWrongLocalRef:
		a.ref = "X" + a.ref
		if len(a.ref) > maxLocalRef {
			a.ref = a.ref[:maxLocalRef]
		}
	case FaultOtherBSN:
		for _, o := range s.persons {
			if o.BSN != p.BSN {
				a.bsnOverride = o.BSN
				break
			}
		}
	}
	return nil
}

func codesList(ms []Melding) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Code
	}
	return out
}

func (s *Simulator) personData(msg *node, rec *Record) ([]byte, int, error) {
	vraag, _, err := readFrame(msg, NSPersonData, false)
	if err != nil {
		return nil, 0, err
	}
	v, err := readLeaves(vraag, NSPersonData, []string{"BSN"})
	if err != nil {
		return nil, 0, err
	}
	bsn := v["BSN"]
	if bsn == "" {
		return nil, 0, clientErr("Vraag/BSN is required")
	}
	rec.BSN = bsn
	a := &verifyAnswer{ns: NSPersonData, op: "OpvragenPersoonsgegevens", q: Query{Person: Person{BSN: bsn}}, bsnOnly: true}
	p := s.byBSN[bsn]
	switch {
	case !ValidBSN(bsn):
		a.outcome, a.messages = OutcomeFailed, []Melding{{"F", "SIM02", "BSN voldoet niet aan de elfproef"}}
	case p == nil:
		a.outcome, a.messages = OutcomeFailed, []Melding{{"F", "3001", "Geen resultaat gevonden"}}
	default:
		switch p.Fault {
		case FaultServerError:
			return nil, 0, errServer
		case FaultUnavailable:
			return nil, 0, errUnavailable
		case FaultOtherBSN:
			for _, o := range s.persons {
				if o.BSN != p.BSN {
					a.bsnOverride = o.BSN
					break
				}
			}
		}
		a.person, a.outcome = p, OutcomeFound
		a.messages = []Melding{{"G", CodePersonFound, "BSN gevonden. Controleert u zorgvuldig of het resultaat bij de juiste persoon hoort voor u deze gegevens verder gebruikt."}}
	}
	rec.Outcome, rec.Codes = string(a.outcome), codesList(a.messages)
	return a.render(), http.StatusOK, nil
}

func (s *Simulator) document(msg *node, rec *Record) ([]byte, error) {
	vraag, ref, err := readFrame(msg, NSDocument, true)
	if err != nil {
		return nil, err
	}
	v, err := readLeaves(vraag, NSDocument, []string{"Documentnummer", "SoortDocument"})
	if err != nil {
		return nil, err
	}
	q := DocumentQuery{Number: v["Documentnummer"], Kind: DocumentKind(v["SoortDocument"])}
	rec.LocalRef, rec.Document = ref, q
	var w xmlWriter
	w.open("Antwoord")
	var outcome Outcome
	var ms []Melding
	if err := q.Validate(); err != nil {
		outcome, ms = OutcomeFailed, []Melding{{"F", "WD002", "Documentnummer of soort document voldoet niet aan het formaat"}}
	} else {
		d, ok := s.docs[string(q.Kind)+"/"+q.Number]
		st := DocUnknown
		if ok {
			st = d.Status
		}
		w.leaf("Documentnummer", q.Number)
		w.leaf("SoortDocument", string(q.Kind))
		w.leaf("StatusDocument", string(st))
		if ok {
			w.leaf("DatumEindeGeldigheid", d.ValidUntil)
		}
		outcome, ms = OutcomeFound, []Melding{{"G", "WD001", "Controle uitgevoerd"}}
	}
	w.close("Antwoord")
	ans := w.b.String()
	if outcome == OutcomeFailed {
		ans = ""
	}
	rec.Outcome, rec.Codes = string(outcome), codesList(ms)
	return renderProposal(NSDocument, "ControleIdentiteitsdocument", ans, outcome, ms, ref), nil
}

func (s *Simulator) appointment(op string, msg *node, rec *Record) ([]byte, error) {
	vraag, ref, err := readFrame(msg, NSAppointment, true)
	if err != nil {
		return nil, err
	}
	rec.LocalRef = ref
	var ans string
	outcome := OutcomeFound
	var ms []Melding
	if op == "AfspraakAanmaken" {
		v, err := readLeaves(vraag, NSAppointment, []string{"AantalVerzoeken", "Omschrijving"})
		if err != nil {
			return nil, err
		}
		if n, err := strconv.Atoi(v["AantalVerzoeken"]); err != nil || n <= 0 {
			return nil, clientErr("AantalVerzoeken must be a positive integer")
		}
		s.mu.Lock()
		s.seq++
		id := fmt.Sprintf("AFS-%06d", s.seq)
		if s.cfg.NewID != nil {
			id = s.cfg.NewID()
		}
		s.appts[id] = true
		s.mu.Unlock()
		var w xmlWriter
		w.open("Antwoord")
		w.leaf("AfspraakKenmerk", id)
		w.close("Antwoord")
		ans, ms = w.b.String(), []Melding{{"G", "AF001", "Afspraak aangemaakt"}}
	} else {
		v, err := readLeaves(vraag, NSAppointment, []string{"AfspraakKenmerk"})
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		ok := s.appts[v["AfspraakKenmerk"]]
		delete(s.appts, v["AfspraakKenmerk"])
		s.mu.Unlock()
		if ok {
			ms = []Melding{{"G", "AF002", "Afspraak verwijderd"}}
		} else {
			outcome, ms = OutcomeFailed, []Melding{{"F", "AF404", "Afspraak onbekend"}}
		}
	}
	rec.Outcome, rec.Codes = string(outcome), codesList(ms)
	return renderProposal(NSAppointment, op, ans, outcome, ms, ref), nil
}

// Appointments returns the open afspraak ids.
func (s *Simulator) Appointments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.appts {
		out = append(out, id)
	}
	return out
}

func renderProposal(ns, op, answer string, outcome Outcome, ms []Melding, ref string) []byte {
	return responseEnvelope(ns, op, func(w *xmlWriter) {
		w.b.WriteString(answer)
		w.leaf("Resultaat", string(outcome))
		writeMeldingen(w, ms)
		w.leaf("LokaalKenmerk", ref)
	})
}

func responseEnvelope(ns, op string, body func(w *xmlWriter)) []byte {
	var w xmlWriter
	w.b.WriteString(`<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="` + NSSoap + `" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>`)
	w.b.WriteString(`<` + op + `Response xmlns="` + ns + `"><` + op + `AntwoordBericht>`)
	body(&w)
	w.b.WriteString(`</` + op + `AntwoordBericht></` + op + `Response></soap:Body></soap:Envelope>`)
	return []byte(w.b.String())
}

func writeMeldingen(w *xmlWriter, ms []Melding) {
	for _, m := range ms {
		w.b.WriteString(`<Melding Soort="` + m.Soort + `" Code="` + m.Code + `">`)
		_ = xmlEscape(&w.b, m.Text)
		w.b.WriteString(`</Melding>`)
	}
}

// verifyAnswer renders OpvragenVerifieren and OpvragenPersoonsgegevens answers.
type verifyAnswer struct {
	ns, op      string
	ref         string
	q           Query
	bsnOnly     bool // OpvragenPersoonsgegevens: Vraag{BSN}, no LokaalKenmerk
	person      *SimPerson
	bsnOverride string
	outcome     Outcome
	messages    []Melding
}

func dev(asked, have string) bool {
	return asked != "" && !strings.EqualFold(strings.TrimSpace(asked), have)
}

func (a *verifyAnswer) anyDeviation() bool {
	p, q := a.person, a.q
	if dev(q.Person.GivenNames, p.GivenNames) || dev(q.Person.SurnamePrefix, p.SurnamePrefix) || dev(q.Person.Surname, p.Surname) ||
		dev(q.Person.BirthPlace, p.BirthPlace) || dev(q.Person.BirthCountry, p.BirthCountry) ||
		(q.Person.Initial != "" && !strings.HasPrefix(strings.ToUpper(p.GivenNames), strings.ToUpper(q.Person.Initial))) {
		return true
	}
	if p.Address == nil {
		return !q.Address.empty()
	}
	pa, qa := p.Address, q.Address
	return dev(qa.Municipality, pa.Municipality) || dev(qa.Street, pa.Street) || dev(qa.HouseNumber, pa.HouseNumber) ||
		dev(qa.HouseLetter, pa.HouseLetter) || dev(qa.HouseNumberSuffix, pa.HouseNumberSuffix) || dev(qa.Designation, pa.Designation) ||
		dev(qa.PostalCode, pa.PostalCode)
}

func (a *verifyAnswer) cmp(w *xmlWriter, name, asked, have string) {
	d := "false"
	if dev(asked, have) {
		d = "true"
	}
	w.b.WriteString(`<` + name + ` Afwijkend="` + d + `">`)
	_ = xmlEscape(&w.b, have)
	w.b.WriteString(`</` + name + `>`)
}

func (a *verifyAnswer) render() []byte {
	return responseEnvelope(a.ns, a.op, func(w *xmlWriter) {
		w.open("Vraag")
		if a.bsnOnly {
			w.leaf("BSN", a.q.Person.BSN)
		} else {
			w.open("Persoon")
			for i, v := range a.q.Person.values() {
				w.leaf(personOrder[i], v)
			}
			w.close("Persoon")
			if !a.q.Address.empty() {
				w.open("Adres")
				for i, v := range a.q.Address.values() {
					w.leaf(addressOrder[i], v)
				}
				w.close("Adres")
			}
		}
		w.close("Vraag")
		if p := a.person; p != nil && a.outcome != OutcomeFailed {
			q := a.q
			w.open("Antwoord")
			w.open("Persoon")
			bsn := p.BSN
			if a.bsnOverride != "" {
				bsn = a.bsnOverride
			}
			w.leaf("BSN", bsn)
			a.cmp(w, "Voornamen", q.Person.GivenNames, p.GivenNames)
			initial := ""
			if p.GivenNames != "" {
				initial = p.GivenNames[:1]
			}
			a.cmp(w, "Voorletter", q.Person.Initial, initial)
			w.leaf("AdellijkeTitelPredikaat", p.NobleTitle)
			a.cmp(w, "VoorvoegselGeslachtsnaam", q.Person.SurnamePrefix, p.SurnamePrefix)
			a.cmp(w, "Geslachtsnaam", q.Person.Surname, p.Surname)
			a.cmp(w, "Geboortedatum", q.Person.BirthDate, p.BirthDate)
			a.cmp(w, "Geboorteplaats", q.Person.BirthPlace, p.BirthPlace)
			a.cmp(w, "Geboorteland", q.Person.BirthCountry, p.BirthCountry)
			a.cmp(w, "Geslachtsaanduiding", q.Person.Sex, p.Sex)
			writeInv(w, p.Investigations, "persoon", "Persoon")
			w.close("Persoon")
			w.open("Adres")
			if pa := p.Address; pa != nil {
				qa := q.Address
				a.cmp(w, "GemeenteVanInschrijving", qa.Municipality, pa.Municipality)
				w.leaf("FunctieAdres", "Woonadres")
				a.cmp(w, "Straatnaam", qa.Street, pa.Street)
				a.cmp(w, "Huisnummer", qa.HouseNumber, pa.HouseNumber)
				a.cmp(w, "Huisletter", qa.HouseLetter, pa.HouseLetter)
				a.cmp(w, "Huisnummertoevoeging", qa.HouseNumberSuffix, pa.HouseNumberSuffix)
				a.cmp(w, "AanduidingBijHuisnummer", qa.Designation, pa.Designation)
				a.cmp(w, "Postcode", qa.PostalCode, pa.PostalCode)
				writeInv(w, p.Investigations, "adres", "Adres")
				w.leaf("Woonplaatsnaam", p.Residence)
			} else {
				w.leaf("LandVanwaarIngeschreven", p.BirthCountry)
				for i, l := range p.Foreign {
					if i < 3 {
						w.leaf(fmt.Sprintf("Regel%dAdresBuitenland", i+1), l)
					}
				}
				w.leaf("LandAdresBuitenland", p.ForeignCountry)
			}
			w.close("Adres")
			w.open("Inschrijving")
			w.leaf("OmschrijvingRedenOpschorting", p.Suspension)
			if p.Secret {
				w.leaf("IndicatieGeheim", SecretRestricted)
			} else {
				w.leaf("IndicatieGeheim", SecretNone)
			}
			w.close("Inschrijving")
			if p.DeathDate != "" {
				w.open("Overlijden")
				w.leaf("DatumOverlijden", p.DeathDate)
				writeInv(w, p.Investigations, "overlijden", "Overlijden")
				w.close("Overlijden")
			}
			w.close("Antwoord")
		}
		w.leaf("Resultaat", string(a.outcome))
		writeMeldingen(w, a.messages)
		if !a.bsnOnly {
			w.leaf("LokaalKenmerk", a.ref)
		}
	})
}

func writeInv(w *xmlWriter, inv []Investigation, cat, suffix string) {
	for _, i := range inv {
		if i.Category != cat {
			continue
		}
		w.leaf("AanduidingGegevensInOnderzoek"+suffix, i.Description)
		w.leaf("DatumIngangOnderzoek"+suffix, i.Since)
	}
}
