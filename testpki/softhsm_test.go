package testpki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/pkcs11"
)

// TestSoftHSM provisions the PKI into SoftHSM tokens and checks them from the outside
// (pkcs11-tool, OpenSC) and through package pkcs11.
func TestSoftHSM(t *testing.T) {
	module := testenv.SoftHSMModule(t)
	tool := testenv.RequireTool(t, "pkcs11-tool")[0]
	dir := testenv.ShortTempDir(t)
	t.Setenv("SOFTHSM2_CONF", SoftHSMConfPath(dir))

	p, err := New(Options{Seed: 3, Dir: dir, SoftHSM: true, ModulePath: module})
	if errors.Is(err, pkcs11.ErrNoCgo) && !testenv.Strict() {
		testenv.Missing(t, "pkcs11 built without cgo")
	}
	require.NoError(t, err)
	require.NoError(t, p.Write(dir))

	conf, err := os.ReadFile(SoftHSMConfPath(dir))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "directories.tokendir = "+filepath.Join(dir, "softhsm", "tokens"))
	assert.Contains(t, string(conf), "objectstore.backend = file")
	assert.Contains(t, string(conf), "log.level = ERROR")

	for _, card := range p.Cards {
		assert.Equal(t, card.Name, card.TokenLabel)
		for _, f := range []string{card.PINFile, card.SOPINFile} {
			st, err := os.Stat(f)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
		}
		for _, c := range card.Certs() {
			assert.Nil(t, c.Key, "%s: key only in the token", c.Name)
			_, err := pkcs11.ParseURI(c.KeyURI)
			require.NoError(t, err, c.KeyURI)
			assert.Contains(t, c.KeyURI, "pkcs11:token="+card.Name+";id=%0")
			assert.Contains(t, c.KeyURI, "pin-source=file:"+card.PINFile)
			_, err = uzi.Parse(c.Cert)
			require.NoError(t, err)
		}
	}
	assert.Contains(t, p.Server.KeyURI, "pkcs11:token=hsm;id=%10;type=private")
	assert.Nil(t, p.Server.Key)
	assert.Contains(t, p.Servers[ServerOtherOrg].KeyURI, "pkcs11:token=hsm;id=%11;type=private")
	assert.NotNil(t, p.Servers[ServerLSP].Key, "simulator keys stay software keys")
	assert.Empty(t, p.Servers[ServerSBVZ].KeyURI)

	// OpenSC sees keys and certificates under the same CKA_ID, keys sensitive and never
	// extractable, the HND key with always-authenticate.
	card := p.CardsOf(uzi.CardZ)[0]
	pin, err := os.ReadFile(card.PINFile)
	require.NoError(t, err)
	cmd := exec.Command(tool, "--module", module, "--token-label", card.Name, "--login", "--pin", strings.TrimSpace(string(pin)), "--list-objects")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+SoftHSMConfPath(dir))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	objs := parseObjects(string(out))
	privs := map[string]string{}
	certs := map[string]bool{}
	for _, o := range objs {
		switch {
		case strings.HasPrefix(o.kind, "Private Key Object"):
			privs[o.attrs["ID"]] = o.attrs["Access"]
			assert.Contains(t, o.attrs["Access"], "sensitive")
			assert.Contains(t, o.attrs["Access"], "never extractable")
			assert.NotContains(t, o.attrs["Access"], ", extractable")
		case strings.HasPrefix(o.kind, "Certificate Object"):
			certs[o.attrs["ID"]] = true
		}
	}
	assert.Len(t, privs, 3, string(out))
	for id := range privs {
		assert.True(t, certs[id], "certificate next to key %s", id)
	}
	assert.Contains(t, privs["02"], "always authenticate", "HND key like a real card")
	assert.NotContains(t, privs["01"], "always authenticate")

	// Sign through package pkcs11 with the AUT and the HND key.
	ctx := context.Background()
	for _, c := range []*Cert{card.Auth, card.Sign, p.Server} {
		k, err := pkcs11.Open(ctx, c.KeyURI, pkcs11.Options{AllowedModules: []string{module}})
		require.NoError(t, err, c.Name)
		assert.Equal(t, c.Cert.Raw, k.Certificate().Raw)
		digest := sha256.Sum256([]byte("aortagw"))
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		require.NoError(t, err, c.Name)
		assert.NoError(t, c.Cert.CheckSignature(x509.SHA256WithRSA, []byte("aortagw"), sig))
		require.NoError(t, k.Close())
	}

	q, err := Load(dir)
	require.NoError(t, err)
	assert.True(t, q.SoftHSM)
	assert.Equal(t, p.Server.KeyURI, q.Server.KeyURI)
	assert.Nil(t, q.Server.Key)
	assert.Equal(t, card.PINFile, q.Cards[0].PINFile)
}

type p11Object struct {
	kind  string
	attrs map[string]string
}

// parseObjects reads pkcs11-tool --list-objects output.
func parseObjects(out string) []p11Object {
	var objs []p11Object
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") && strings.Contains(line, "Object") {
			objs = append(objs, p11Object{kind: line, attrs: map[string]string{}})
			continue
		}
		if len(objs) == 0 {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			objs[len(objs)-1].attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return objs
}

func TestSoftHSMConfElsewhere(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOFTHSM2_CONF", filepath.Join(dir, "other.conf"))
	_, err := New(Options{Dir: dir, SoftHSM: true})
	assert.ErrorIs(t, err, ErrSoftHSMConf)
	_, err = os.Stat(SoftHSMConfPath(dir))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing written when refused")
}
