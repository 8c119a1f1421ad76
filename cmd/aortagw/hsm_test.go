package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/testpki"
)

// privateKeyLine is how `hsm list` prints a private key.
// and the token in its URI on the next line.
var privateKeyLine = regexp.MustCompile(`(?m)^  private  id=.*\n\s+pkcs11:token=([^;]+);`)

// TestHSMCommands runs `aortagw hsm list` and `aortagw hsm test` against
// real SoftHSM tokens made by testpki.
func TestHSMCommands(t *testing.T) {
	module := testenv.SoftHSMModule(t)
	dir := testenv.ShortTempDir(t)
	t.Setenv("SOFTHSM2_CONF", testpki.SoftHSMConfPath(dir))
	p, err := testpki.New(testpki.Options{Seed: 11, Dir: dir, SoftHSM: true, ModulePath: module})
	if err != nil && strings.Contains(err.Error(), pkcs11.ErrNoCgo.Error()) && !testenv.Strict() {
		testenv.Missing(t, "pkcs11 built without cgo")
	}
	require.NoError(t, err)
	gw := p.Servers[testpki.ServerGateway]
	require.NotEmpty(t, gw.KeyURI)
	u, err := pkcs11.ParseURI(gw.KeyURI)
	require.NoError(t, err)
	label, _ := u.Path("token")
	ps, _ := u.Query("pin-source")
	pinFile := strings.TrimPrefix(ps, "file:")
	pin, err := os.ReadFile(pinFile)
	require.NoError(t, err)
	pinText := strings.TrimSpace(string(pin))

	t.Run("list without login shows tokens and certificates", func(t *testing.T) {
		out, err := runCLI(t, "hsm", "list", "--module", module)
		require.NoError(t, err, out)
		assert.Contains(t, out, "module   "+module)
		assert.Contains(t, out, `token    "`+label+`"`)
		assert.Contains(t, out, "RSA PKCS#1 v1.5")
		assert.Empty(t, privateKeyLine.FindAllString(out, -1), "no login, no private keys")
		assert.NotContains(t, out, pinText)
	})
	t.Run("list with a pin file logs in to the named token only", func(t *testing.T) {
		out, err := runCLI(t, "hsm", "list", "--module", module, "--pin-file", pinFile, "--token", label)
		require.NoError(t, err, out) // the other tokens have other PINs: not tried
		keys := privateKeyLine.FindAllStringSubmatch(out, -1)
		require.NotEmpty(t, keys, out)
		for _, k := range keys {
			assert.Equal(t, label, k[1], "only the named token's private keys are listed")
		}
		assert.NotContains(t, out, pinText, "the PIN is never printed")
		_, err = runCLI(t, "hsm", "list", "--module", module, "--pin-file", pinFile)
		require.Error(t, err, "a PIN file without --token is refused")
		_, err = pkcs11.Inspect(module, pinFile, "")
		require.ErrorIs(t, err, pkcs11.ErrInvalidURI)
	})
	t.Run("test signs and verifies", func(t *testing.T) {
		out, err := runCLI(t, "hsm", "test", "--key", gw.KeyURI, "--n", "20", "--concurrency", "2")
		require.NoError(t, err, out)
		assert.Contains(t, out, "signed   20 (verified 20, failed 0) with 2 worker(s)")
		assert.Regexp(t, `rate     [0-9.]+ signatures/s`, out)
		assert.NotContains(t, out, pinText)
	})
	t.Run("test by module-name within --allow-module", func(t *testing.T) {
		byName := strings.Replace(gw.KeyURI, "module-path="+module, "module-name=softhsm2", 1)
		require.NotEqual(t, gw.KeyURI, byName)
		out, err := runCLI(t, "hsm", "test", "--key", byName, "--n", "2", "--allow-module", module)
		require.NoError(t, err, out)
		assert.Contains(t, out, "verified 2, failed 0")
		_, err = runCLI(t, "hsm", "test", "--key", byName, "--n", "2")
		require.ErrorIs(t, err, pkcs11.ErrModuleNotAllowed, "a name alone allows nothing")
	})
	t.Run("test refuses a module outside --allow-module", func(t *testing.T) {
		out, err := runCLI(t, "hsm", "test", "--key", gw.KeyURI, "--allow-module", "/usr/lib/x86_64-linux-gnu/libc.so.6")
		require.ErrorIs(t, err, pkcs11.ErrModuleNotAllowed)
		assert.NotContains(t, out, "signed")
	})
	t.Run("test with a wrong pin fails once, without the pin", func(t *testing.T) {
		bad := dir + "/wrong.pin"
		require.NoError(t, os.WriteFile(bad, []byte("99999999\n"), 0o600))
		uri := strings.Replace(gw.KeyURI, "pin-source=file:"+pinFile, "pin-source=file:"+bad, 1)
		require.NotEqual(t, gw.KeyURI, uri)
		out, err := runCLI(t, "hsm", "test", "--key", uri, "--n", "1")
		require.ErrorIs(t, err, pkcs11.ErrPIN)
		assert.NotContains(t, out+err.Error(), "99999999")
	})
}
