package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/testpki"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTokenCLI(t *testing.T) {
	p := testpki.Default(t)
	dir := t.TempDir()
	srv := p.Server
	id, err := uzi.Parse(srv.Cert)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(srv.Key)
	require.NoError(t, err)
	keyFile, certFile, trustFile, tok := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "trust.pem"), filepath.Join(dir, "trx.xml")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	var chain, trust []byte
	for _, c := range srv.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, c := range append(p.RootCerts(), p.IntermediateCerts()...) {
		trust = append(trust, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	require.NoError(t, os.WriteFile(certFile, chain, 0o600))
	require.NoError(t, os.WriteFile(trustFile, trust, 0o600))
	var crlArgs []string
	for i, l := range p.CRLList() {
		f := filepath.Join(dir, "crl"+string(rune('a'+i))+".pem")
		require.NoError(t, os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: l.Raw}), 0o600))
		crlArgs = append(crlArgs, "--crl", f)
	}

	_, err = runCLI(t, "token", "sign", "--type", "transactie", "--key", keyFile, "--cert", certFile, "--out", tok,
		"--ura", id.URA, "--bsn", "999911120", "--interaction", "GQZG_IN000001NL", "--message-id-root", "1.2.3",
		"--message-id-ext", "42", "--context", "https://x.example/regel", "--embed-cert")
	require.NoError(t, err)

	now := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
	verify := append([]string{"token", "verify", tok, "--trust", trustFile, "--type", "transaction", "--now", now}, crlArgs...)

	out, err := runCLI(t, append(verify, "--json", "--bsn", "999911120", "--interaction", "GQZG_IN000001NL", "--ura", id.URA)...)
	require.NoError(t, err, out)
	var claims map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &claims))
	assert.Equal(t, "transaction", claims["type"])
	assert.Equal(t, "999911120", claims["patient_bsn"])
	assert.Equal(t, id.URA, claims["signer_ura"])
	assert.Equal(t, "", claims["subject"])

	tests := []struct {
		name string
		args []string
		code string
	}{
		{"wrong bsn", []string{"--bsn", "999912446"}, "BindingBSN"},
		{"wrong type", []string{"--type", "mandaat"}, "WrongType"},
		{"other audience", []string{"--audience", "urn:other"}, "Audience"},
		{"too late", []string{"--now", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "Expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCLI(t, append(append([]string{}, verify...), tc.args...)...)
			var ee *exitError
			require.True(t, errors.As(err, &ee), "want exit error, got %v", err)
			assert.Equal(t, 1, ee.code)
			assert.Contains(t, ee.Error(), "code="+tc.code)
			assert.NotContains(t, ee.Error(), "\n")
		})
	}

	t.Run("replay db across runs", func(t *testing.T) {
		db := filepath.Join(dir, "replay.jsonl")
		_, err := runCLI(t, append(append([]string{}, verify...), "--replay-db", db)...)
		require.NoError(t, err)
		_, err = runCLI(t, append(append([]string{}, verify...), "--replay-db", db)...)
		var ee *exitError
		require.True(t, errors.As(err, &ee))
		assert.Contains(t, ee.Error(), "code=Replay")
	})

	t.Run("inspect", func(t *testing.T) {
		out, err := runCLI(t, "token", "inspect", tok)
		require.NoError(t, err)
		assert.Contains(t, out, "UNVERIFIED")
		assert.Contains(t, out, "burgerServiceNummer")
	})

	t.Run("sign refuses a mandate with the server key", func(t *testing.T) {
		_, err := runCLI(t, "token", "sign", "--type", "mandate", "--key", keyFile, "--cert", certFile, "--out", filepath.Join(dir, "m.xml"),
			"--ura", id.URA, "--context", "https://x", "--until-card-expiry")
		assert.ErrorContains(t, err, "not allowed")
	})
}
