package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"github.com/aortagw/aortagw/internal/xmlsafe"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Namespaces of the fault code prefixes aortagw writes. [P]: the LSP's own
// fault namespace is not public; "zim" codes are ours, used by the simulator.
const (
	NSFaultZIM     = "urn:aortagw:fault:zim"
	NSFaultAortagw = "urn:aortagw:fault"
)

var faultPrefixes = map[string]string{
	"soap":    NS,
	"zim":     NSFaultZIM,
	"aortagw": NSFaultAortagw,
}

// Fault is a SOAP 1.1 fault. Code is a QName with one of the known prefixes
// ("soap:Client", "zim:TokenReplayed", "aortagw:NoEnrolment"); String is the
// human-readable faultstring and Detail an optional plain-text detail.
type Fault struct {
	Code, String, Detail string
}

// Error implements error so a Fault can travel as one.
func (f *Fault) Error() string {
	return "soap fault (code=" + f.Code + "): " + f.String
}

// ContentType is the SOAP 1.1 media type.
const ContentType = "text/xml; charset=utf-8"

// MarshalFault renders f as a complete SOAP 1.1 envelope. An unknown or
// malformed code prefix is declared under urn:aortagw:fault:<prefix>; a code
// that is not a QName becomes soap:Server.
func MarshalFault(f Fault) []byte {
	prefix, local, ok := strings.Cut(f.Code, ":")
	if !ok || !xmlsafe.IsNCName(prefix) || !xmlsafe.IsNCName(local) {
		prefix, local = "soap", "Server"
	}
	var b bytes.Buffer
	b.WriteString(`<soap:Envelope xmlns:soap="` + NS + `"><soap:Body><soap:Fault>`)
	b.WriteString(`<faultcode`)
	if prefix != "soap" {
		ns, known := faultPrefixes[prefix]
		if !known {
			ns = "urn:aortagw:fault:" + prefix
		}
		b.WriteString(` xmlns:` + prefix + `="`)
		_ = xml.EscapeText(&b, []byte(ns))
		b.WriteString(`"`)
	}
	b.WriteString(`>` + prefix + ":" + local + `</faultcode><faultstring>`)
	_ = xml.EscapeText(&b, []byte(f.String))
	b.WriteString(`</faultstring>`)
	if f.Detail != "" {
		b.WriteString(`<detail><aortagw:message xmlns:aortagw="` + NSFaultAortagw + `">`)
		_ = xml.EscapeText(&b, []byte(f.Detail))
		b.WriteString(`</aortagw:message></detail>`)
	}
	b.WriteString(`</soap:Fault></soap:Body></soap:Envelope>`)
	return b.Bytes()
}

// WriteFault writes f as a SOAP 1.1 fault response with the given HTTP
// status (SOAP 1.1 uses 500 for faults; pass another status on purpose only).
func WriteFault(w http.ResponseWriter, status int, f Fault) {
	body := MarshalFault(f)
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ParseFault parses b as a SOAP 1.1 envelope and returns its fault, if the
// body holds one. The code's prefix is normalised by namespace: the SOAP
// namespace becomes "soap", ours "zim"/"aortagw"; other namespaces keep the
// prefix as written. It returns false for anything that is not a
// well-formed SOAP 1.1 fault envelope.
func ParseFault(b []byte) (*Fault, bool) {
	e, err := ParseEnvelope(b, Limits{})
	if err != nil || !e.IsFault() {
		return nil, false
	}
	f, err := e.Fault()
	if err != nil {
		return nil, false
	}
	return f, true
}

// errNotFault is returned by Envelope.Fault for a non-fault body.
var errNotFault = errors.New("soap: body is not a fault")

// Fault extracts the fault from a parsed envelope whose body is a soap:Fault.
func (e *Envelope) Fault() (*Fault, error) {
	if !e.IsFault() {
		return nil, errNotFault
	}
	d := xml.NewDecoder(bytes.NewReader(e.BodyElement()))
	d.Strict = true
	scope := e.BodyNamespaces()
	var (
		f              Fault
		depth          int
		cur            string
		code           string
		codeScope      map[string]string
		text           strings.Builder
		sawCode, sawFS bool
	)
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth <= 2 {
				for _, a := range t.Attr {
					if a.Name.Space == "xmlns" {
						scope = copyWith(scope, a.Name.Local, a.Value)
					} else if a.Name.Space == "" && a.Name.Local == "xmlns" {
						scope = copyWith(scope, "", a.Value)
					}
				}
			}
			if depth == 2 {
				cur = t.Name.Local
				text.Reset()
				if t.Name.Space != "" {
					cur = "" // fault children are unqualified in SOAP 1.1
				}
				if cur == "faultcode" {
					codeScope = scope
				}
			}
		case xml.CharData:
			if depth >= 2 && text.Len() < 8192 {
				text.Write(t)
			}
		case xml.EndElement:
			if depth == 2 {
				v := strings.TrimSpace(text.String())
				switch cur {
				case "faultcode":
					if sawCode {
						return nil, errors.New("soap: duplicate faultcode")
					}
					sawCode, code = true, v
				case "faultstring":
					if sawFS {
						return nil, errors.New("soap: duplicate faultstring")
					}
					sawFS, f.String = true, v
				case "detail":
					f.Detail = strings.Join(strings.Fields(v), " ")
				}
				cur = ""
			}
			depth--
		}
	}
	if !sawCode || code == "" {
		return nil, errors.New("soap: fault without faultcode")
	}
	f.Code = normaliseCode(code, codeScope)
	return &f, nil
}

func copyWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func normaliseCode(code string, scope map[string]string) string {
	prefix, local, ok := strings.Cut(code, ":")
	if !ok {
		return code
	}
	ns := scope[prefix]
	for p, known := range faultPrefixes {
		if ns == known {
			return p + ":" + local
		}
	}
	return code
}
