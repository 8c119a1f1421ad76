package testpki

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/pkcs11"
)

// SoftHSMConfPath returns the softhsm2.conf New writes for a PKI in dir. Point SOFTHSM2_CONF
// at it before the process loads the SoftHSM module.
func SoftHSMConfPath(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Join(abs, "softhsm", "softhsm2.conf")
}

// hsm provisions SoftHSM tokens through pkcs11's provisioning API.
type hsm struct {
	admin  *pkcs11.Admin
	dir    string // absolute PKI directory
	module string
	conf   string
}

func openHSM(dir, module string) (*hsm, error) {
	if module == "" {
		module = DefaultModulePath
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	conf := SoftHSMConfPath(abs)
	if cur := os.Getenv("SOFTHSM2_CONF"); cur != "" && filepath.Clean(cur) != conf {
		return nil, fmt.Errorf("%w: (SOFTHSM2_CONF=%s, want=%s)", ErrSoftHSMConf, cur, conf)
	}
	tokens := filepath.Join(abs, "softhsm", "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "pins"), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	body := "# SoftHSM v2 configuration written by aortagw testpki; not the system one.\n" +
		"directories.tokendir = " + tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	if os.Getenv("SOFTHSM2_CONF") == "" {
		if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSoftHSM, err)
		}
	}
	admin, err := pkcs11.OpenAdmin(module)
	if err != nil {
		return nil, fmt.Errorf("%w: open module (module=%s): %w", ErrSoftHSM, module, err)
	}
	return &hsm{admin: admin, dir: abs, module: module, conf: conf}, nil
}

func (h *hsm) close() { _ = h.admin.Close() }

// newPIN returns a random numeric PIN of n digits.
func newPIN(n int) ([]byte, error) {
	pin := make([]byte, n)
	for i := range pin {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			return nil, err
		}
		pin[i] = byte('0' + d.Int64())
	}
	return pin, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// initToken creates the token c.Name with fresh PINs written to 0600 files.
func (h *hsm) initToken(c *Card) error {
	pin, err := newPIN(8)
	if err != nil {
		return err
	}
	defer wipe(pin)
	so, err := newPIN(12)
	if err != nil {
		return err
	}
	defer wipe(so)
	c.TokenLabel = c.Name
	c.PINFile = filepath.Join(h.dir, "pins", c.Name+".pin")
	c.SOPINFile = filepath.Join(h.dir, "pins", c.Name+".so.pin")
	if err := os.WriteFile(c.PINFile, append(append([]byte{}, pin...), '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	if err := os.WriteFile(c.SOPINFile, append(append([]byte{}, so...), '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	if err := h.admin.InitToken(c.Name, so, pin); err != nil {
		return fmt.Errorf("%w: init token (token=%s): %w", ErrSoftHSM, c.Name, err)
	}
	return nil
}

func readPIN(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSoftHSM, err)
	}
	return []byte(strings.TrimSuffix(string(b), "\n")), nil
}

// hsmLeaf generates the key inside the token, issues the certificate over the token's public
// key and stores the certificate next to the key under the same CKA_ID.
func (b *builder) hsmLeaf(lp leafParams, token, pinFile string, id []byte, alwaysAuth bool) (*Cert, error) {
	h := b.hsm
	pin, err := readPIN(pinFile)
	if err != nil {
		return nil, err
	}
	defer wipe(pin)
	label := strings.ToLower(lp.purpose.Short())
	if lp.card.Type == uzi.CardS {
		label = lp.card.Name
	}
	pub, err := h.admin.GenerateRSAKey(token, pin, id, label, 2048, alwaysAuth)
	if err != nil {
		return nil, fmt.Errorf("%w: generate key (token=%s): %w", ErrSoftHSM, token, err)
	}
	tmpl, err := b.leafTemplate(lp)
	if err != nil {
		return nil, err
	}
	c, err := b.issue(lp.name, tmpl, lp.ca, pub, nil)
	if err != nil {
		return nil, err
	}
	if err := h.admin.ImportCertificate(token, pin, id, label, c.Cert); err != nil {
		return nil, fmt.Errorf("%w: import certificate (token=%s): %w", ErrSoftHSM, token, err)
	}
	c.KeyID = append([]byte{}, id...)
	c.KeyURI = KeyURI(token, id, h.module, pinFile)
	return c, nil
}

// KeyURI returns the RFC 7512 URI of a private key on a SoftHSM token.
func KeyURI(token string, id []byte, module, pinFile string) string {
	var sb strings.Builder
	sb.WriteString("pkcs11:token=")
	sb.WriteString(escape(token))
	sb.WriteString(";id=")
	for _, x := range id {
		fmt.Fprintf(&sb, "%%%02X", x)
	}
	sb.WriteString(";type=private?module-path=")
	sb.WriteString(escape(module))
	sb.WriteString("&pin-source=file:")
	sb.WriteString(escape(pinFile))
	return sb.String()
}

// escape percent-encodes everything except RFC 3986 unreserved characters and '/'.
func escape(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}
