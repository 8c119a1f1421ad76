package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// validConfig returns a configuration that passes Validate, with its files
// in dir.
func validConfig(t *testing.T, dir string) Config {
	t.Helper()
	pin := filepath.Join(dir, "server.pin")
	require.NoError(t, os.WriteFile(pin, []byte("1234\n"), 0o600))
	c := DefaultConfig()
	c.XIS.Auth = "bearer"
	c.XIS.BearerToken = "xis-secret"
	c.Admin.BearerToken = "admin-secret"
	c.LSP.Endpoint = "https://lsp.example:443/zim"
	c.LSP.CAFile = filepath.Join(dir, "lsp-ca.pem")
	c.HSM.KeyURI = "pkcs11:token=server;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:" + pin
	c.Trust.UZIRootsFile = filepath.Join(dir, "roots.pem")
	c.Tokens.ApplicationID = "1234"
	c.Tokens.URA = "12345678"
	c.Store.DSN = "sqlite:" + filepath.Join(dir, "gw.db")
	return c
}

func TestConfigLayering(t *testing.T) {
	dir := t.TempDir()
	base := validConfig(t, dir)

	yamlFile := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(yamlFile, []byte(`
xis:
  addr: 127.0.0.1:9001
  max_body_bytes: 1000
lsp:
  timeout: 7s
tokens:
  transaction_lifetime: 10m
trust:
  crl_refresh_interval: 5m
triggers:
  job_retention: 168h
interactions:
  REPC_IN000001NL:
    context: https://example/ctx
    soap_action: urn:hl7-org:v3/REPC_IN000001NL
`), 0o600))
	tomlFile := filepath.Join(dir, "gw.toml")
	require.NoError(t, os.WriteFile(tomlFile, []byte(`
[xis]
addr = "127.0.0.1:9002"
[lsp]
timeout = "9s"
`), 0o600))

	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		check func(t *testing.T, c Config)
	}{
		{name: "defaults only", check: func(t *testing.T, c Config) {
			assert.Equal(t, "127.0.0.1:8443", c.XIS.Addr)
			assert.True(t, c.Strict)
			assert.Equal(t, 5*time.Minute, c.Tokens.TransactionLifetime)
		}},
		{name: "yaml overrides defaults", file: yamlFile, check: func(t *testing.T, c Config) {
			assert.Equal(t, "127.0.0.1:9001", c.XIS.Addr)
			assert.EqualValues(t, 1000, c.XIS.MaxBodyBytes)
			assert.Equal(t, 7*time.Second, c.LSP.Timeout)
			assert.Equal(t, 10*time.Minute, c.Tokens.TransactionLifetime)
			assert.Equal(t, 5*time.Minute, c.Trust.CRLRefreshInterval)
			assert.Equal(t, 48*time.Hour, c.Trust.CRLMaxAge, "a key absent from the file keeps its default")
			assert.Equal(t, 7*24*time.Hour, c.Triggers.JobRetention)
			assert.Contains(t, c.Interactions, "REPC_IN000001NL")
			assert.Contains(t, c.Interactions, "QURX_IN990111NL", "file entries merge with the defaults")
			assert.Equal(t, "bearer", c.XIS.Auth, "keys absent from the file keep their earlier value")
		}},
		{name: "toml overrides defaults", file: tomlFile, check: func(t *testing.T, c Config) {
			assert.Equal(t, "127.0.0.1:9002", c.XIS.Addr)
			assert.Equal(t, 9*time.Second, c.LSP.Timeout)
		}},
		{name: "env overrides file", file: yamlFile,
			env: []string{"AORTAGW_XIS_ADDR=127.0.0.1:9100", "AORTAGW_LSP_TIMEOUT=3s", "PATH=/bin",
				"AORTAGW_TRIGGERS_CALLBACK_PREFIXES=https://xis.local/cb, https://xis2.local/cb"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "127.0.0.1:9100", c.XIS.Addr)
				assert.Equal(t, 3*time.Second, c.LSP.Timeout)
				assert.Equal(t, []string{"https://xis.local/cb", "https://xis2.local/cb"}, c.Triggers.CallbackPrefixes)
				assert.EqualValues(t, 1000, c.XIS.MaxBodyBytes)
			}},
		{name: "flags override env", file: yamlFile,
			env:   []string{"AORTAGW_XIS_ADDR=127.0.0.1:9100"},
			flags: map[string]string{"xis.addr": "127.0.0.1:9200", "strict": "false"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "127.0.0.1:9200", c.XIS.Addr)
				assert.False(t, c.Strict)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.Interactions = DefaultConfig().Interactions
			if tt.file != "" {
				require.NoError(t, c.LoadFile(tt.file))
			}
			require.NoError(t, c.ApplyEnv(tt.env))
			for k, v := range tt.flags {
				require.NoError(t, c.Set(k, v))
			}
			tt.check(t, c)
		})
	}
}

func TestConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	unknownYAML := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(unknownYAML, []byte("xis:\n  adress: 1\n"), 0o600))
	unknownTOML := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(unknownTOML, []byte("[lsp]\nendpont = \"x\"\n"), 0o600))
	json := filepath.Join(dir, "c.json")
	require.NoError(t, os.WriteFile(json, []byte("{}"), 0o600))
	for _, f := range []string{unknownYAML, unknownTOML, json, filepath.Join(dir, "missing.yaml")} {
		c := DefaultConfig()
		assert.ErrorIs(t, c.LoadFile(f), ErrConfig, f)
	}
	c := DefaultConfig()
	assert.ErrorIs(t, c.ApplyEnv([]string{"AORTAGW_NO_SUCH_KEY=1"}), ErrConfig)
	assert.ErrorIs(t, c.Set("xis.max_body_bytes", "lots"), ErrConfig)
	assert.ErrorIs(t, c.Set("interactions", "x"), ErrConfig)
	assert.ErrorIs(t, c.Set("xis", "x"), ErrConfig)
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	loosePin := filepath.Join(dir, "loose.pin")
	require.NoError(t, os.WriteFile(loosePin, []byte("1234"), 0o644))
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // substring of the error; "" = valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "plain http to the lsp in strict mode", mutate: func(c *Config) { c.LSP.Endpoint = "http://lsp:80/" }, want: "plain HTTP"},
		{name: "plain http allowed when not strict", mutate: func(c *Config) { c.LSP.Endpoint = "http://lsp:80/"; c.Strict = false }},
		{name: "pin-value in strict mode", mutate: func(c *Config) {
			c.HSM.KeyURI = "pkcs11:token=server?module-path=/x.so&pin-value=1234"
		}, want: "pin-value"},
		{name: "pin file readable by others", mutate: func(c *Config) {
			c.HSM.KeyURI = "pkcs11:token=server?pin-source=file:" + loosePin
		}, want: "readable by group or others"},
		{name: "sha1 in strict mode", mutate: func(c *Config) {
			c.Interactions["X"] = InteractionConfig{Context: "https://x/sha1", SOAPAction: "a"}
		}, want: "SHA-1"},
		{name: "bearer on a public address without tls", mutate: func(c *Config) { c.XIS.Addr = "0.0.0.0:8443" }, want: "loopback"},
		{name: "mtls without files", mutate: func(c *Config) { c.XIS.Auth = "mtls" }, want: "client_ca_file"},
		{name: "transaction lifetime over 90 minutes", mutate: func(c *Config) { c.Tokens.TransactionLifetime = 91 * time.Minute }, want: "transaction_lifetime"},
		{name: "bad ura", mutate: func(c *Config) { c.Tokens.URA = "123" }, want: "tokens.ura"},
		{name: "bad dsn", mutate: func(c *Config) { c.Store.DSN = "mysql://x" }, want: "store.dsn"},
		{name: "no lsp", mutate: func(c *Config) { c.LSP.Endpoint = "" }, want: "lsp.endpoint"},
		{name: "bad callback prefix", mutate: func(c *Config) { c.Triggers.CallbackPrefixes = []string{"ftp://x"} }, want: "callback_prefixes"},
		{name: "bad time zone", mutate: func(c *Config) { c.Triggers.TimeZone = "Mars/Olympus" }, want: "time_zone"},
		{name: "crl refresh not shorter than max age", mutate: func(c *Config) { c.Trust.CRLRefreshInterval = c.Trust.CRLMaxAge }, want: "crl_refresh_interval"},
		{name: "crl refresh too often", mutate: func(c *Config) { c.Trust.CRLRefreshInterval = time.Second }, want: "crl_refresh_interval"},
		{name: "crl refresh hourly", mutate: func(c *Config) { c.Trust.CRLRefreshInterval = time.Hour }},
		{name: "no crl max age", mutate: func(c *Config) { c.Trust.CRLMaxAge = 0 }, want: "crl_max_age"},
		{name: "job retention under an hour", mutate: func(c *Config) { c.Triggers.JobRetention = time.Minute }, want: "job_retention"},
		{name: "job retention a year", mutate: func(c *Config) { c.Triggers.JobRetention = 365 * 24 * time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t, dir)
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrConfig))
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestConfigRedaction(t *testing.T) {
	dir := t.TempDir()
	c := validConfig(t, dir)
	c.HSM.KeyURI = "pkcs11:token=s;pin-value=4321?module-path=/x.so&pin-value=9876"
	c.Store.DSN = "postgres://gw:hunter2@db:5432/gw?sslmode=verify-full&password=hunter3"
	out, err := c.YAML()
	require.NoError(t, err)
	s := string(out)
	for _, secret := range []string{"xis-secret", "admin-secret", "4321", "9876", "hunter2", "hunter3"} {
		assert.NotContains(t, s, secret)
	}
	assert.Contains(t, s, "REDACTED")
	assert.Contains(t, s, "transaction_lifetime: 5m0s")
	assert.Equal(t, "xis-secret", c.XIS.BearerToken, "Redacted must not modify the original")
	assert.True(t, strings.Contains(RedactDSN("postgres://u:p@h/db"), "u:xxxxx@") || !strings.Contains(RedactDSN("postgres://u:p@h/db"), ":p@"))
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tok")
	require.NoError(t, os.WriteFile(good, []byte("s3cret\n"), 0o600))
	b, err := ReadSecretFile(good)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", string(b))
	open := filepath.Join(dir, "open")
	require.NoError(t, os.WriteFile(open, []byte("s3cret"), 0o640))
	_, err = ReadSecretFile(open)
	assert.ErrorIs(t, err, ErrConfig)
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	_, err = ReadSecretFile(empty)
	assert.ErrorIs(t, err, ErrConfig)
}
