package pkcs11

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// URI is a parsed RFC 7512 PKCS#11 URI.
//
// Accepted grammar (strict subset of RFC 7512 incl. errata 5499/5500):
//
//	pkcs11:[path-attr *(";" path-attr)]["?" query-attr *("&" query-attr)]
//	path attributes:  token manufacturer serial model library-manufacturer
//	                  library-description library-version object type id
//	                  slot-description slot-manufacturer slot-id
//	query attributes: pin-source pin-value module-name module-path
//
// Values are percent-decoded (a literal "+" stays "+"); id is kept as raw bytes. Unknown
// attributes (including vendor-specific ones), duplicates, characters outside the RFC's
// allowed set and malformed percent escapes are errors. pin-source accepts only
// "file:" followed by an absolute path. A URI never prints its PIN: String and Redacted
// both replace pin-value with "REDACTED".
type URI struct {
	path  map[string]string
	query map[string]string
}

var (
	pathAttrs = []string{"token", "manufacturer", "serial", "model", "library-manufacturer",
		"library-description", "library-version", "object", "type", "id",
		"slot-description", "slot-manufacturer", "slot-id"}
	queryAttrs = []string{"pin-source", "pin-value", "module-name", "module-path"}
	// Canonical output order (the RFC's order of definition).
	typeValues = []string{"public", "private", "cert", "secret-key", "data"}
)

// maxURILen caps the input; real URIs are a few hundred bytes.
const maxURILen = 4096

// ParseURI parses s strictly (see URI). Errors wrap ErrInvalidURI and never echo a PIN.
func ParseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidURI, maxURILen)
	}
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fmt.Errorf("%w: the scheme must be %q", ErrInvalidURI, "pkcs11")
	}
	rest := s[len(scheme):]
	p, q, hasQuery := strings.Cut(rest, "?")
	u := &URI{path: map[string]string{}, query: map[string]string{}}
	if err := u.parseAttrs(p, ";", pathAttrs, u.path, isPathChar); err != nil {
		return nil, err
	}
	if hasQuery {
		if q == "" {
			return nil, fmt.Errorf("%w: empty query", ErrInvalidURI)
		}
		if err := u.parseAttrs(q, "&", queryAttrs, u.query, isQueryChar); err != nil {
			return nil, err
		}
	}
	if err := u.validate(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *URI) parseAttrs(s, sep string, known []string, into map[string]string, ok func(byte) bool) error {
	if s == "" {
		return nil
	}
	for attr := range strings.SplitSeq(s, sep) {
		name, raw, found := strings.Cut(attr, "=")
		if !found || name == "" {
			return fmt.Errorf("%w: attribute without name=value (pos=%s)", ErrInvalidURI, safeName(name))
		}
		if !slices.Contains(known, name) {
			return fmt.Errorf("%w: unknown attribute (name=%s)", ErrInvalidURI, safeName(name))
		}
		if _, dup := into[name]; dup {
			return fmt.Errorf("%w: duplicate attribute (name=%s)", ErrInvalidURI, name)
		}
		v, err := pctDecode(raw, ok)
		if err != nil {
			if name == "pin-value" {
				return fmt.Errorf("%w: malformed value (name=pin-value)", ErrInvalidURI)
			}
			return fmt.Errorf("%w: %v (name=%s)", ErrInvalidURI, err, name)
		}
		into[name] = v
	}
	return nil
}

// safeName shortens and sanitises an attribute name for an error message.
func safeName(n string) string {
	if len(n) > 32 {
		n = n[:32]
	}
	return strconv.Quote(n)
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// pk11-res-avail (RFC 7512 section 2.3).
func isResAvail(c byte) bool { return strings.IndexByte(":[]@!$'()*+,=", c) >= 0 }

func isPathChar(c byte) bool { return isUnreserved(c) || isResAvail(c) || c == '&' }
func isQueryChar(c byte) bool {
	return isUnreserved(c) || isResAvail(c) || strings.IndexByte("/?|", c) >= 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func pctDecode(s string, ok func(byte) bool) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("truncated percent escape")
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("bad percent escape")
			}
			b.WriteByte(h<<4 | l)
			i += 2
		case ok(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("character not allowed unescaped (char=%q)", c)
		}
	}
	return b.String(), nil
}

func (u *URI) validate() error {
	if t, ok := u.path["type"]; ok && !slices.Contains(typeValues, t) {
		return fmt.Errorf("%w: bad type (type=%q)", ErrInvalidURI, t)
	}
	if v, ok := u.path["slot-id"]; ok {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil || v == "" || v[0] == '+' {
			return fmt.Errorf("%w: slot-id must be a decimal number", ErrInvalidURI)
		}
	}
	if v, ok := u.path["library-version"]; ok {
		maj, min, hasMin := strings.Cut(v, ".")
		if !isDigits(maj) || hasMin && !isDigits(min) {
			return fmt.Errorf("%w: library-version must be M or M.N", ErrInvalidURI)
		}
	}
	if v, ok := u.query["pin-source"]; ok {
		if _, err := pinFilePath(v); err != nil {
			return err
		}
	}
	if _, ok := u.query["pin-source"]; ok {
		if _, ok := u.query["pin-value"]; ok {
			return fmt.Errorf("%w: pin-source and pin-value are exclusive", ErrInvalidURI)
		}
	}
	if v, ok := u.query["module-path"]; ok && !filepath.IsAbs(v) {
		return fmt.Errorf("%w: module-path must be absolute", ErrInvalidURI)
	}
	if _, ok := u.query["module-name"]; ok {
		if _, ok := u.query["module-path"]; ok {
			return fmt.Errorf("%w: module-name and module-path are exclusive", ErrInvalidURI)
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func pinFilePath(src string) (string, error) {
	p, ok := strings.CutPrefix(src, "file:")
	if !ok {
		return "", fmt.Errorf("%w: pin-source must be file:<absolute path>", ErrInvalidURI)
	}
	// Accept file:/abs and file:///abs (RFC 8089); nothing with a host part.
	if strings.HasPrefix(p, "//") {
		p = strings.TrimPrefix(p, "//")
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("%w: pin-source file uri must not name a host", ErrInvalidURI)
		}
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("%w: pin-source path must be absolute and clean", ErrInvalidURI)
	}
	return p, nil
}

// Path returns the decoded value of a path attribute and whether it is present.
func (u *URI) Path(name string) (string, bool) { v, ok := u.path[name]; return v, ok }

// Query returns the decoded value of a query attribute and whether it is present.
// It refuses to return pin-value (use the PIN reader).
func (u *URI) Query(name string) (string, bool) {
	if name == "pin-value" {
		_, ok := u.query[name]
		return "", ok
	}
	v, ok := u.query[name]
	return v, ok
}

// ID returns the raw CKA_ID bytes (nil when absent).
func (u *URI) ID() []byte {
	if v, ok := u.path["id"]; ok {
		return []byte(v)
	}
	return nil
}

// ModulePath returns the module-path attribute ("" when absent).
func (u *URI) ModulePath() string { return u.query["module-path"] }

// HasPINValue reports whether the URI carries a pin-value.
func (u *URI) HasPINValue() bool { _, ok := u.query["pin-value"]; return ok }

// String formats the URI canonically with pin-value redacted; it equals Redacted.
func (u *URI) String() string { return u.Redacted() }

// Redacted formats the URI canonically (RFC attribute order, minimal escaping) with pin-value
// replaced by "REDACTED". It is safe for logs and errors.
func (u *URI) Redacted() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	first := true
	for _, n := range pathAttrs {
		v, ok := u.path[n]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(';')
		}
		first = false
		b.WriteString(n)
		b.WriteByte('=')
		if n == "id" {
			for i := 0; i < len(v); i++ {
				fmt.Fprintf(&b, "%%%02X", v[i])
			}
			continue
		}
		pctEncode(&b, v, func(c byte) bool { return isPathChar(c) && c != '&' })
	}
	first = true
	for _, n := range queryAttrs {
		v, ok := u.query[n]
		if !ok {
			continue
		}
		if first {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(n)
		b.WriteByte('=')
		if n == "pin-value" {
			b.WriteString("REDACTED")
			continue
		}
		pctEncode(&b, v, func(c byte) bool { return isQueryChar(c) && c != ';' })
	}
	return b.String()
}

func pctEncode(b *strings.Builder, v string, ok func(byte) bool) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if ok(c) && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(b, "%%%02X", c)
		}
	}
}

// maxPINFile caps a PIN file; PINs are short.
const maxPINFile = 256

// readPIN returns the PIN of the URI as a fresh []byte the caller must wipe. For pin-source
// the file is re-read on every call (the PIN is not kept in memory between logins); it must
// be a regular file without group or world permissions. One trailing newline is trimmed.
func (u *URI) readPIN(allowValue bool) ([]byte, error) {
	if v, ok := u.query["pin-value"]; ok {
		if !allowValue {
			return nil, ErrPINValueNotAllowed
		}
		return []byte(v), nil
	}
	src, ok := u.query["pin-source"]
	if !ok {
		return nil, fmt.Errorf("%w: uri has no pin-source", ErrPINSource)
	}
	p, err := pinFilePath(src)
	if err != nil {
		return nil, err
	}
	return readPINFile(p)
}

func readPINFile(p string) ([]byte, error) {
	f, err := os.Open(p) // #nosec G304 -- path comes from operator configuration
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open pin file (path=%s)", ErrPINSource, p)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot stat pin file (path=%s)", ErrPINSource, p)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: pin file is not a regular file (path=%s)", ErrPINSource, p)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: pin file must not be accessible by group or others (path=%s mode=%04o)",
			ErrPINSource, p, st.Mode().Perm())
	}
	buf := make([]byte, maxPINFile+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		wipe(buf)
		return nil, fmt.Errorf("%w: cannot read pin file (path=%s)", ErrPINSource, p)
	}
	if n > maxPINFile {
		wipe(buf)
		return nil, fmt.Errorf("%w: pin file too large (path=%s)", ErrPINSource, p)
	}
	pin := buf[:n]
	if bytes.HasSuffix(pin, []byte("\r\n")) {
		pin = pin[:len(pin)-2]
	} else if bytes.HasSuffix(pin, []byte("\n")) {
		pin = pin[:len(pin)-1]
	}
	if len(pin) == 0 {
		wipe(buf)
		return nil, fmt.Errorf("%w: pin file is empty (path=%s)", ErrPINSource, p)
	}
	out := make([]byte, len(pin))
	copy(out, pin)
	wipe(buf)
	return out, nil
}

// wipe overwrites b with zeros.
func wipe(b []byte) { clear(b) }
