package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // schedules in Europe/Amsterdam on hosts without zoneinfo

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

// ErrConfig is returned (wrapped) for every configuration that is refused.
var ErrConfig = errors.New("gateway: invalid configuration")

// EnvPrefix is the prefix of the environment variables that override the file.
const EnvPrefix = "AORTAGW_"

// Config is the whole gateway configuration. Load it with DefaultConfig, then
// LoadFile, ApplyEnv and Set (flags), in that order, and call Validate.
// Field names in files and environment variables are the yaml/toml tag paths:
// `lsp.endpoint` in a file is AORTAGW_LSP_ENDPOINT in the environment.
type Config struct {
	// Strict forbids insecure options: plain HTTP to the LSP, pin-value in key
	// URIs, SHA-1, a bearer token on a non-loopback listener without TLS.
	Strict bool `yaml:"strict" toml:"strict"`

	XIS          XISConfig                    `yaml:"xis" toml:"xis"`
	Admin        AdminConfig                  `yaml:"admin" toml:"admin"`
	LSP          LSPConfig                    `yaml:"lsp" toml:"lsp"`
	HSM          HSMConfig                    `yaml:"hsm" toml:"hsm"`
	Store        StoreConfig                  `yaml:"store" toml:"store"`
	Trust        TrustConfig                  `yaml:"trust" toml:"trust"`
	Tokens       TokensConfig                 `yaml:"tokens" toml:"tokens"`
	Triggers     TriggersConfig               `yaml:"triggers" toml:"triggers"`
	Log          LogConfig                    `yaml:"log" toml:"log"`
	Interactions map[string]InteractionConfig `yaml:"interactions" toml:"interactions"`
}

// XISConfig is the listener the XIS sends its messages and triggers to.
type XISConfig struct {
	Addr string `yaml:"addr" toml:"addr"`
	// Auth is "mtls" (client certificate chaining to ClientCAFile) or
	// "bearer" (local set-ups: Authorization: Bearer <token>).
	Auth            string `yaml:"auth" toml:"auth"`
	CertFile        string `yaml:"cert_file" toml:"cert_file"`
	KeyFile         string `yaml:"key_file" toml:"key_file"`
	ClientCAFile    string `yaml:"client_ca_file" toml:"client_ca_file"`
	BearerToken     string `yaml:"bearer_token" toml:"bearer_token" secret:"true"`
	BearerTokenFile string `yaml:"bearer_token_file" toml:"bearer_token_file"`
	// MaxBodyBytes caps a message body; larger ones get BadRequest.
	MaxBodyBytes   int64 `yaml:"max_body_bytes" toml:"max_body_bytes"`
	MaxHeaderBytes int   `yaml:"max_header_bytes" toml:"max_header_bytes"`
	// StripHeaders are removed from every inbound request before anything
	// reads it (client-supplied identity must never be trusted).
	StripHeaders []string      `yaml:"strip_headers" toml:"strip_headers"`
	ReadTimeout  time.Duration `yaml:"read_timeout" toml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout" toml:"write_timeout"`
	// RequestTimeout bounds the whole handling of one message (sign + LSP).
	RequestTimeout time.Duration `yaml:"request_timeout" toml:"request_timeout"`
}

// AdminConfig is the separate listener for the token lifecycle API,
// /metrics, /healthz and /readyz. /v1/admin/* needs the bearer token.
type AdminConfig struct {
	Addr            string `yaml:"addr" toml:"addr"`
	CertFile        string `yaml:"cert_file" toml:"cert_file"`
	KeyFile         string `yaml:"key_file" toml:"key_file"`
	BearerToken     string `yaml:"bearer_token" toml:"bearer_token" secret:"true"`
	BearerTokenFile string `yaml:"bearer_token_file" toml:"bearer_token_file"`
	MaxBodyBytes    int64  `yaml:"max_body_bytes" toml:"max_body_bytes"`
}

// LSPConfig is the upstream (the ZIM) reached over mutual TLS.
type LSPConfig struct {
	Endpoint   string        `yaml:"endpoint" toml:"endpoint"`
	ServerName string        `yaml:"server_name" toml:"server_name"`
	CAFile     string        `yaml:"ca_file" toml:"ca_file"`
	Timeout    time.Duration `yaml:"timeout" toml:"timeout"`
	// MaxResponseBytes caps what the gateway reads back from the LSP.
	MaxResponseBytes int64 `yaml:"max_response_bytes" toml:"max_response_bytes"`
}

// HSMConfig names the UZI server key (transaction tokens, mTLS to the LSP,
// CMS audit exports) by an RFC 7512 URI with a pin-source file.
type HSMConfig struct {
	KeyURI         string        `yaml:"key_uri" toml:"key_uri" secret:"uri"`
	AllowedModules []string      `yaml:"allowed_modules" toml:"allowed_modules"`
	PoolSize       int           `yaml:"pool_size" toml:"pool_size"`
	OpTimeout      time.Duration `yaml:"op_timeout" toml:"op_timeout"`
	// ChainFile optionally holds the chain above the server certificate
	// (PEM) when the token stores only the leaf.
	ChainFile string `yaml:"chain_file" toml:"chain_file"`
}

// StoreConfig selects the store: "sqlite:PATH" (default) or "postgres://...".
type StoreConfig struct {
	DSN string `yaml:"dsn" toml:"dsn" secret:"dsn"`
}

// TrustConfig is what registered enrolment and mandate tokens are validated
// against.
type TrustConfig struct {
	UZIRootsFile      string   `yaml:"uzi_roots_file" toml:"uzi_roots_file"`
	IntermediatesFile string   `yaml:"intermediates_file" toml:"intermediates_file"`
	CRLFiles          []string `yaml:"crl_files" toml:"crl_files"`
	// CertificatesDir holds signing certificates (PEM/DER files) for tokens
	// whose KeyInfo names the certificate by issuer and serial only.
	CertificatesDir string        `yaml:"certificates_dir" toml:"certificates_dir"`
	CRLMaxAge       time.Duration `yaml:"crl_max_age" toml:"crl_max_age"`
	// CRLRefreshInterval is how often the CRL files are re-read (and the
	// store's expired replay entries and old trigger jobs purged); it must
	// be shorter than CRLMaxAge.
	CRLRefreshInterval time.Duration `yaml:"crl_refresh_interval" toml:"crl_refresh_interval"`
}

// TokensConfig fixes the values the gateway writes into transaction tokens.
type TokensConfig struct {
	// ApplicationID is the AORTA application id of this gateway/XIS.
	ApplicationID string `yaml:"application_id" toml:"application_id"`
	// URA is the care provider; messages from another URA are refused.
	URA                 string        `yaml:"ura" toml:"ura"`
	Audience            string        `yaml:"audience" toml:"audience"`
	TransactionLifetime time.Duration `yaml:"transaction_lifetime" toml:"transaction_lifetime"`
	Skew                time.Duration `yaml:"skew" toml:"skew"`
}

// TriggersConfig governs the durable trigger queue.
type TriggersConfig struct {
	Workers      int           `yaml:"workers" toml:"workers"`
	MaxAttempts  int           `yaml:"max_attempts" toml:"max_attempts"`
	Backoff      time.Duration `yaml:"backoff" toml:"backoff"`
	MaxBackoff   time.Duration `yaml:"max_backoff" toml:"max_backoff"`
	PollInterval time.Duration `yaml:"poll_interval" toml:"poll_interval"`
	// CallbackPrefixes are the only URL prefixes results may be POSTed to
	// (no open relay from the gateway's network position).
	CallbackPrefixes []string `yaml:"callback_prefixes" toml:"callback_prefixes"`
	// Author is the system actor (UZI number of the mandated system or
	// person) used for trigger queries when the trigger names none.
	Author string `yaml:"author" toml:"author"`
	// MessageIDRoot is the HL7 message id root of trigger queries (the
	// extension is the queue's attempt id); default derived from the
	// application id.
	MessageIDRoot string `yaml:"message_id_root" toml:"message_id_root"`
	// JobRetention is how long done and dead trigger jobs (and their
	// results) are kept before the maintenance pass deletes them.
	JobRetention time.Duration `yaml:"job_retention" toml:"job_retention"`
	// TimeZone is where schedules are evaluated (default Europe/Amsterdam).
	TimeZone string `yaml:"time_zone" toml:"time_zone"`
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Level  string `yaml:"level" toml:"level"`
	Format string `yaml:"format" toml:"format"` // "text" or "json"
}

// InteractionConfig is what the gateway needs per HL7 interaction id.
type InteractionConfig struct {
	// Context is the autorisatieregel/context URI; the mandate must name it.
	Context           string `yaml:"context" toml:"context"`
	ContextCodeSystem string `yaml:"context_code_system" toml:"context_code_system"`
	ContextCode       string `yaml:"context_code" toml:"context_code"`
	SOAPAction        string `yaml:"soap_action" toml:"soap_action"`
	// Query allows trigger queries for this interaction, built from the
	// interaction's hl7.BuildQuery template.
	Query bool `yaml:"query" toml:"query"`
}

// ZIMAudience is the audience of the ZIM in every token.
const ZIMAudience = "urn:IIroot:2.16.840.1.113883.2.4.6.6:IIext:1"

// MedicationContext is the default autorisatieregel/context for medication queries.
const MedicationContext = "https://aortagw.example/autorisatieregels/medicatiecontext/v2"

// DefaultConfig returns the defaults: strict, loopback listeners, SQLite,
// 5-minute transaction tokens, and the medication query interactions.
func DefaultConfig() Config {
	med := InteractionConfig{
		Context:           MedicationContext,
		ContextCodeSystem: "2.16.840.1.113883.2.4.3.111.15.1",
		ContextCode:       "KZDI",
	}
	inter := map[string]InteractionConfig{}
	for _, id := range []string{"QURX_IN990111NL", "QURX_IN990011NL", "GQZG_IN000001NL"} {
		m := med
		m.SOAPAction = "urn:hl7-org:v3/" + id
		m.Query = id != "QURX_IN990111NL" // the two with a query template in internal/hl7
		inter[id] = m
	}
	return Config{
		Strict: true,
		XIS: XISConfig{
			Addr:           "127.0.0.1:8443",
			Auth:           "mtls",
			MaxBodyBytes:   4 << 20,
			MaxHeaderBytes: 32 << 10,
			StripHeaders: []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
				"X-Forwarded-Proto", "X-Real-Ip", "X-Remote-User", "X-User", "X-Uzi-Number",
				"X-Uzi-Role", "X-Ura", "X-Client-Cert", "X-Ssl-Client-Cert", "X-Ssl-Client-Dn",
				"X-Aortagw-Actor", "X-Aortagw-Identity"},
			ReadTimeout:    30 * time.Second,
			WriteTimeout:   60 * time.Second,
			RequestTimeout: 30 * time.Second,
		},
		Admin: AdminConfig{
			Addr:         "127.0.0.1:8444",
			MaxBodyBytes: 1 << 20,
		},
		LSP: LSPConfig{
			Timeout:          20 * time.Second,
			MaxResponseBytes: 16 << 20,
		},
		HSM: HSMConfig{
			AllowedModules: []string{"/usr/lib/softhsm/libsofthsm2.so"},
			PoolSize:       4,
			OpTimeout:      5 * time.Second,
		},
		Store: StoreConfig{DSN: "sqlite:aortagw.db"},
		Trust: TrustConfig{CRLMaxAge: 48 * time.Hour, CRLRefreshInterval: 15 * time.Minute},
		Tokens: TokensConfig{
			Audience:            ZIMAudience,
			TransactionLifetime: 5 * time.Minute,
			Skew:                60 * time.Second,
		},
		Triggers: TriggersConfig{
			Workers:      2,
			MaxAttempts:  8,
			Backoff:      2 * time.Second,
			MaxBackoff:   5 * time.Minute,
			PollInterval: time.Second,
			JobRetention: 30 * 24 * time.Hour,
			TimeZone:     "Europe/Amsterdam",
		},
		Log:          LogConfig{Level: "info", Format: "text"},
		Interactions: inter,
	}
}

// LoadFile merges a YAML (.yaml, .yml) or TOML (.toml) file over c. Unknown
// keys are refused, so a typo never silently falls back to a default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: read config (path=%s): %v", ErrConfig, path, err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: yaml (path=%s): %v", ErrConfig, path, err)
		}
	case ".toml":
		md, err := toml.Decode(string(b), c)
		if err != nil {
			return fmt.Errorf("%w: toml (path=%s): %v", ErrConfig, path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return fmt.Errorf("%w: toml (path=%s): unknown key %s", ErrConfig, path, und[0])
		}
	default:
		return fmt.Errorf("%w: config file must end in .yaml, .yml or .toml (path=%s)", ErrConfig, path)
	}
	return nil
}

// ApplyEnv applies AORTAGW_* variables from environ (os.Environ() form).
// Unknown AORTAGW_ variables are refused; interactions cannot be set here.
func (c *Config) ApplyEnv(environ []string) error {
	paths := c.keyPaths()
	byEnv := make(map[string]string, len(paths))
	for _, p := range paths {
		byEnv[EnvPrefix+strings.ToUpper(strings.ReplaceAll(p, ".", "_"))] = p
	}
	sort.Strings(environ)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		// AORTAGW_REQUIRE_ALL and AORTAGW_TEST_* belong to the test tooling.
		if k == "AORTAGW_REQUIRE_ALL" || strings.HasPrefix(k, "AORTAGW_TEST_") || k == "AORTAGW_SOFTHSM_MODULE" {
			continue
		}
		p, ok := byEnv[k]
		if !ok {
			return fmt.Errorf("%w: unknown environment variable %s", ErrConfig, k)
		}
		if err := c.Set(p, v); err != nil {
			return err
		}
	}
	return nil
}

// Set assigns one scalar option by its dotted key (for flags and env):
// strings, booleans, integers, durations ("5m") and comma-separated lists.
func (c *Config) Set(key, value string) error {
	f, ok := field(reflect.ValueOf(c).Elem(), strings.Split(key, "."))
	if !ok {
		return fmt.Errorf("%w: unknown key %q", ErrConfig, key)
	}
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(value)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("%w: key %q cannot be set from a string", ErrConfig, key)
	}
	return nil
}

func field(v reflect.Value, path []string) (reflect.Value, bool) {
	for _, name := range path {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if tagName(t.Field(i)) == name {
				v = v.Field(i)
				found = true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	if v.Kind() == reflect.Struct || v.Kind() == reflect.Map {
		return reflect.Value{}, false
	}
	return v, true
}

func tagName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return n
}

// keyPaths lists every scalar key Set accepts.
func (c *Config) keyPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			n := prefix + tagName(f)
			switch {
			case f.Type.Kind() == reflect.Map:
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, n+".")
			default:
				out = append(out, n)
			}
		}
	}
	walk(reflect.TypeOf(*c), "")
	return out
}

// Validate checks the configuration and, in strict mode, refuses insecure
// options. It does no I/O beyond stat-ing PIN and token files for their mode.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.XIS.Addr); err != nil {
		bad("xis.addr %q: %v", c.XIS.Addr, err)
	}
	if _, _, err := net.SplitHostPort(c.Admin.Addr); err != nil {
		bad("admin.addr %q: %v", c.Admin.Addr, err)
	}
	switch c.XIS.Auth {
	case "mtls":
		if c.XIS.CertFile == "" || c.XIS.KeyFile == "" || c.XIS.ClientCAFile == "" {
			bad("xis.auth=mtls needs xis.cert_file, xis.key_file and xis.client_ca_file")
		}
	case "bearer":
		if c.XIS.BearerToken == "" && c.XIS.BearerTokenFile == "" {
			bad("xis.auth=bearer needs xis.bearer_token or xis.bearer_token_file")
		}
		if c.Strict && c.XIS.CertFile == "" && !loopback(c.XIS.Addr) {
			bad("strict: xis.auth=bearer without TLS is only allowed on a loopback address (xis.addr=%s)", c.XIS.Addr)
		}
	default:
		bad("xis.auth must be mtls or bearer (got %q)", c.XIS.Auth)
	}
	if (c.XIS.CertFile == "") != (c.XIS.KeyFile == "") {
		bad("xis.cert_file and xis.key_file go together")
	}
	if c.Admin.BearerToken == "" && c.Admin.BearerTokenFile == "" {
		bad("admin needs admin.bearer_token or admin.bearer_token_file")
	}
	if c.Strict && c.Admin.CertFile == "" && !loopback(c.Admin.Addr) {
		bad("strict: the admin listener without TLS is only allowed on a loopback address (admin.addr=%s)", c.Admin.Addr)
	}
	for _, f := range []struct{ key, path string }{
		{"xis.bearer_token_file", c.XIS.BearerTokenFile}, {"admin.bearer_token_file", c.Admin.BearerTokenFile},
	} {
		if f.path != "" {
			if err := checkSecretFile(f.path); err != nil {
				bad("%s: %v", f.key, err)
			}
		}
	}
	if c.XIS.MaxBodyBytes <= 0 || c.XIS.MaxBodyBytes > 64<<20 {
		bad("xis.max_body_bytes must be in (0, 64 MiB] (got %d)", c.XIS.MaxBodyBytes)
	}
	if c.XIS.MaxHeaderBytes <= 0 || c.XIS.MaxHeaderBytes > 1<<20 {
		bad("xis.max_header_bytes must be in (0, 1 MiB] (got %d)", c.XIS.MaxHeaderBytes)
	}
	u, err := url.Parse(c.LSP.Endpoint)
	switch {
	case c.LSP.Endpoint == "":
		bad("lsp.endpoint is required")
	case err != nil || u.Host == "":
		bad("lsp.endpoint %q is not an absolute URL", c.LSP.Endpoint)
	case u.Scheme == "http" && c.Strict:
		bad("strict: plain HTTP to the LSP is forbidden (lsp.endpoint=%s)", c.LSP.Endpoint)
	case u.Scheme != "https" && u.Scheme != "http":
		bad("lsp.endpoint scheme must be https (got %q)", u.Scheme)
	}
	if c.LSP.CAFile == "" {
		bad("lsp.ca_file (the pinned LSP CA set) is required")
	}
	if c.LSP.Timeout <= 0 {
		bad("lsp.timeout must be positive")
	}
	if c.HSM.KeyURI == "" {
		bad("hsm.key_uri is required")
	} else {
		if !strings.HasPrefix(c.HSM.KeyURI, "pkcs11:") {
			bad("hsm.key_uri must be a pkcs11: URI")
		}
		if strings.Contains(strings.ToLower(c.HSM.KeyURI), "pin-value") && c.Strict {
			bad("strict: pin-value in hsm.key_uri is forbidden; use pin-source=file:...")
		}
		if p := pinSource(c.HSM.KeyURI); p != "" {
			if err := checkSecretFile(p); err != nil {
				bad("hsm.key_uri pin-source: %v", err)
			}
		}
	}
	if !strings.HasPrefix(c.Store.DSN, "sqlite:") && !strings.HasPrefix(c.Store.DSN, "postgres://") &&
		!strings.HasPrefix(c.Store.DSN, "postgresql://") {
		bad("store.dsn must start with sqlite: or postgres:// (got %q)", RedactDSN(c.Store.DSN))
	}
	if c.Trust.UZIRootsFile == "" {
		bad("trust.uzi_roots_file is required (registered tokens are validated against it)")
	}
	if c.Trust.CRLMaxAge <= 0 {
		bad("trust.crl_max_age must be positive (got %s)", c.Trust.CRLMaxAge)
	}
	if c.Trust.CRLRefreshInterval < time.Minute || c.Trust.CRLRefreshInterval >= c.Trust.CRLMaxAge {
		bad("trust.crl_refresh_interval must be at least 1m and shorter than trust.crl_max_age (got %s, crl_max_age %s)",
			c.Trust.CRLRefreshInterval, c.Trust.CRLMaxAge)
	}
	if !validAppID(c.Tokens.ApplicationID) {
		bad("tokens.application_id is required (the AORTA application id, digits)")
	}
	if c.Tokens.URA != "" && !digits(c.Tokens.URA, 8) {
		bad("tokens.ura must be 8 digits (got %q)", c.Tokens.URA)
	}
	if c.Tokens.TransactionLifetime <= 0 || c.Tokens.TransactionLifetime > 90*time.Minute {
		bad("tokens.transaction_lifetime must be in (0, 90m] (got %s)", c.Tokens.TransactionLifetime)
	}
	if c.Tokens.Skew < 0 || c.Tokens.Skew > 5*time.Minute {
		bad("tokens.skew must be in [0, 5m] (got %s)", c.Tokens.Skew)
	}
	if c.Tokens.Audience == "" {
		bad("tokens.audience is required")
	}
	if c.Triggers.Workers < 1 || c.Triggers.Workers > 64 {
		bad("triggers.workers must be in [1, 64]")
	}
	if c.Triggers.MaxAttempts < 1 {
		bad("triggers.max_attempts must be >= 1")
	}
	if c.Triggers.Backoff <= 0 || c.Triggers.MaxBackoff < c.Triggers.Backoff || c.Triggers.PollInterval <= 0 {
		bad("triggers.backoff, max_backoff and poll_interval must be positive, max_backoff >= backoff")
	}
	if c.Triggers.JobRetention < time.Hour {
		bad("triggers.job_retention must be at least 1h (got %s)", c.Triggers.JobRetention)
	}
	for _, p := range c.Triggers.CallbackPrefixes {
		pu, err := url.Parse(p)
		if err != nil || pu.Host == "" || (pu.Scheme != "https" && pu.Scheme != "http") {
			bad("triggers.callback_prefixes: %q is not an absolute http(s) URL", p)
		}
	}
	if _, err := time.LoadLocation(c.Triggers.TimeZone); err != nil {
		bad("triggers.time_zone %q: %v", c.Triggers.TimeZone, err)
	}
	if len(c.Interactions) == 0 {
		bad("interactions: at least one interaction must be configured")
	}
	for id, in := range c.Interactions {
		if in.Context == "" || in.SOAPAction == "" {
			bad("interactions.%s needs context and soap_action", id)
		}
		if c.Strict && strings.Contains(strings.ToLower(in.SOAPAction+in.Context), "sha1") {
			bad("strict: interactions.%s refers to SHA-1", id)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level must be debug, info, warn or error")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format must be text or json")
	}
	return errors.Join(errs...)
}

func loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func validAppID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

// pinSource extracts the file of a pin-source=file:... (or plain path) query
// attribute from a PKCS#11 URI; "" when there is none.
func pinSource(uri string) string {
	_, q, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "pin-source" {
			v, _ = url.PathUnescape(v)
			return strings.TrimPrefix(v, "file:")
		}
	}
	return ""
}

// checkSecretFile refuses a secret file that is missing or readable by the
// group or others.
func checkSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("secret file (path=%s): %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secret file is readable by group or others (path=%s mode=%#o); chmod 600", path, st.Mode().Perm())
	}
	return nil
}

// ReadSecretFile reads a bearer token or similar secret file: mode-checked,
// one trailing newline trimmed, empty refused.
func ReadSecretFile(path string) ([]byte, error) {
	if err := checkSecretFile(path); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read secret (path=%s): %v", ErrConfig, path, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: secret file is empty (path=%s)", ErrConfig, path)
	}
	return b, nil
}

// Redacted returns a copy safe to print: inline secrets replaced, pin-value
// removed from key URIs, passwords removed from DSNs.
func (c Config) Redacted() Config {
	r := c
	if r.XIS.BearerToken != "" {
		r.XIS.BearerToken = "REDACTED"
	}
	if r.Admin.BearerToken != "" {
		r.Admin.BearerToken = "REDACTED"
	}
	r.HSM.KeyURI = RedactKeyURI(r.HSM.KeyURI)
	r.Store.DSN = RedactDSN(r.Store.DSN)
	r.Interactions = make(map[string]InteractionConfig, len(c.Interactions))
	for k, v := range c.Interactions {
		r.Interactions[k] = v
	}
	return r
}

// RedactKeyURI replaces a pin-value attribute in a PKCS#11 URI.
func RedactKeyURI(uri string) string {
	path, q, ok := strings.Cut(uri, "?")
	redactAttrs := func(s, sep string) string {
		parts := strings.Split(s, sep)
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok && strings.EqualFold(k, "pin-value") {
				parts[i] = k + "=REDACTED"
			}
		}
		return strings.Join(parts, sep)
	}
	path = redactAttrs(path, ";")
	if !ok {
		return path
	}
	return path + "?" + redactAttrs(q, "&")
}

// RedactDSN removes a password from a postgres:// DSN (both userinfo and
// the password= query parameter).
func RedactDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://REDACTED"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// YAML renders the redacted configuration as YAML.
func (c Config) YAML() ([]byte, error) {
	return yaml.Marshal(c.Redacted())
}
