package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/sbvz"
	"github.com/aortagw/aortagw/testpki"
	"github.com/aortagw/aortagw/tokens"
)

// ErrDemo is wrapped by every failed demo step.
var ErrDemo = errors.New("demo")

// DemoOptions configure RunDemo.
type DemoOptions struct {
	// Dir holds everything the demo creates (PKI, SoftHSM tokens, config,
	// database). A directory left by an earlier demo run is wiped; any other
	// non-empty directory is refused unless Force is set.
	Dir   string
	Force bool
	// Out receives the step-by-step report.
	Out io.Writer
	// ModulePath is the SoftHSM2 module (default testpki.DefaultModulePath).
	ModulePath string
	// Logger receives the components' logs (default: discarded, so the
	// report stays readable; errors end up in the returned error).
	Logger *slog.Logger
}

const demoMarker = ".aortagw-demo"

// demo is one run's state.
type demo struct {
	opts   DemoOptions
	out    io.Writer
	log    *slog.Logger
	dir    string
	pki    *testpki.PKI
	rt     *Runtime
	lspSim *lsp.Simulator
	sbvz   *sbvz.Simulator
	cfg    Config
	xis    string
	admin  string
	client *http.Client
	giver  *testpki.Card
	actor  *testpki.Card
	start  time.Time
	stop   []func()

	sbvzAddr  string
	storeDSN  string                       // overrides the store DSN (benchmarks)
	upstream  atomic.Pointer[http.Handler] // what the LSP listener serves (default the simulator)
	enrolment []byte
	mandate   []byte
	callbacks chan []byte
}

// RunDemo runs the whole VGU flow on embedded defaults, in this process:
// test PKI with SoftHSM tokens, LSP and SBV-Z simulators over real mutual TLS,
// the gateway from a written configuration file (SQLite store), an enrolment
// after the WID and BSN checks, a mandate signed with the caregiver's card
// key and PIN, a medication query and a trigger through the gateway, and the
// LSP's record, the audit trail and its verification. SoftHSM reads
// SOFTHSM2_CONF once per process, so RunDemo sets it (and refuses when it
// points elsewhere) before any PKCS#11 use.
func RunDemo(ctx context.Context, opts DemoOptions) (err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.ModulePath == "" {
		opts.ModulePath = testpki.DefaultModulePath
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &demo{opts: opts, out: opts.Out, log: opts.Logger, start: time.Now(),
		client: &http.Client{Timeout: 30 * time.Second}}
	defer func() {
		for i := len(d.stop) - 1; i >= 0; i-- {
			d.stop[i]()
		}
		d.client.CloseIdleConnections()
	}()
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"Create the test PKI and SoftHSM tokens", d.stepPKI},
		{"Start the LSP and SBV-Z simulators and the gateway", d.stepStart},
		{"Enrol a patient after the WID and BSN checks", d.stepEnrol},
		{"Sign a mandate with the caregiver's card and PIN; register both tokens", d.stepMandate},
		{"Send a medication query through the gateway, and fire one trigger", d.stepQuery},
		{"What the LSP accepted, the audit trail and its verification", d.stepShow},
	}
	fmt.Fprintf(d.out, "aortagw demo: the VGU flow end to end (dir %s)\n", opts.Dir)
	for i, s := range steps {
		fmt.Fprintf(d.out, "\n%d. %s\n", i+1, s.title)
		t0 := time.Now()
		if err := s.run(ctx); err != nil {
			fmt.Fprintf(d.out, "   FAILED (the error follows)\n")
			return fmt.Errorf("%w: step %d (%s): %w", ErrDemo, i+1, strings.ToLower(s.title), err)
		}
		fmt.Fprintf(d.out, "   done in %s\n", time.Since(t0).Round(10*time.Millisecond))
	}
	fmt.Fprintf(d.out, "\nThe demo passed in %s. Everything it made is in %s.\n", time.Since(d.start).Round(100*time.Millisecond), opts.Dir)
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, "   "+format+"\n", args...) }

// prepareDir empties a directory an earlier demo made (or any, with Force).
func (d *demo) prepareDir() error {
	dir, err := filepath.Abs(d.opts.Dir)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(ents) > 0:
		if _, merr := os.Stat(filepath.Join(dir, demoMarker)); merr != nil && !d.opts.Force {
			return fmt.Errorf("%s is not empty and was not made by the demo; use --force or another --dir", dir)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by aortagw demo; rerunning wipes this directory\n"), 0o600); err != nil {
		return err
	}
	d.dir = dir
	return nil
}

func (d *demo) stepPKI(context.Context) error {
	if err := d.prepareDir(); err != nil {
		return err
	}
	pkiDir := filepath.Join(d.dir, "pki")
	conf := testpki.SoftHSMConfPath(pkiDir)
	if cur := os.Getenv("SOFTHSM2_CONF"); cur != "" && filepath.Clean(cur) != conf {
		return fmt.Errorf("SOFTHSM2_CONF is set to %s; unset it (the demo uses its own token directory)", cur)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return err
	}
	if _, err := os.Stat(d.opts.ModulePath); err != nil {
		return fmt.Errorf("SoftHSM2 module not found at %s: run `make deps` (Debian package softhsm2)", d.opts.ModulePath)
	}
	p, err := testpki.New(testpki.Options{Seed: 1, Dir: pkiDir, SoftHSM: true, ModulePath: d.opts.ModulePath})
	if err != nil {
		return err
	}
	if err := p.Write(pkiDir); err != nil {
		return err
	}
	d.pki = p
	gw, err := uzi.Parse(p.Server.Cert)
	if err != nil {
		return err
	}
	for _, c := range p.Cards {
		if c.URA != gw.URA || c.Sign == nil {
			continue
		}
		if c.Type == uzi.CardZ && d.giver == nil {
			d.giver = c
		}
		if c.Type == uzi.CardN && d.actor == nil {
			d.actor = c
		}
	}
	if d.giver == nil || d.actor == nil {
		return errors.New("the test PKI has no Z and N card in the gateway's organisation")
	}
	d.say("UZI test roots, %d CAs with CRLs, %d cards, server certificates (SoftHSM, %s)", len(p.CAs)+4, len(p.Cards), filepath.Base(d.opts.ModulePath))
	d.say("organisation %s (URA %s): gateway server key in token %q, never leaves it", p.Server.Cert.Subject.Organization[0], gw.URA, testpki.HSMToken)
	d.say("caregiver %s (UZI %s, role %s) and assistant %s (UZI %s): one SoftHSM token per card", d.giver.Person, d.giver.UZI, d.giver.Role, d.actor.Person, d.actor.UZI)
	return nil
}

func writePEM(path string, certs []*x509.Certificate) error {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// demoPatient is the patient of the demo: in the SBV-Z register and with
// dispenses at the LSP.
func demoPatient() sbvz.SimPerson {
	return sbvz.SimPerson{Key: "demo", BSN: lsp.WellKnownBSNs[0], GivenNames: "Maria Johanna", Surname: "Boer",
		SurnamePrefix: "de", BirthDate: "19581003", BirthPlace: "Maastricht", BirthCountry: "Nederland", Sex: "V",
		Address: &sbvz.Address{Municipality: "Maastricht", Street: "Vrijthof", HouseNumber: "12", PostalCode: "6211LD"}, Residence: "Maastricht"}
}

// serveTLS serves h on 127.0.0.1 (with TLS when tc is not nil) until the
// demo ends.
func (d *demo) serveTLS(h http.Handler, tc *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tc == nil {
			_ = srv.Serve(ln)
			return
		}
		_ = srv.ServeTLS(ln, "", "")
	}()
	d.stop = append(d.stop, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), nil
}

func (d *demo) stepStart(ctx context.Context) error {
	p := d.pki
	// The LSP simulator: strict token checks against the test PKI.
	sim, err := lsp.NewTrustingSimulator(lsp.SimConfig{Seed: 1, Logger: d.log},
		lsp.Trust{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
			Signers: p.LeafCerts(), ClientCA: p.CAs[testpki.CAServer].Cert})
	if err != nil {
		return err
	}
	d.lspSim = sim
	lc := p.Servers[testpki.ServerLSP]
	lcert, err := mtls.Certificate(lc.Key, lc.Chain)
	if err != nil {
		return err
	}
	var simH http.Handler = sim
	d.upstream.Store(&simH)
	lspAddr, err := d.serveTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*d.upstream.Load()).ServeHTTP(w, r)
	}), sim.TLSConfig(lcert))
	if err != nil {
		return err
	}
	_, lspPort, _ := net.SplitHostPort(lspAddr)
	d.say("LSP simulator    https://localhost:%s  (mTLS: UZI server certificates only)", lspPort)

	// The SBV-Z simulator.
	sb, err := sbvz.NewSimulator(sbvz.SimConfig{Persons: append(sbvz.Personas(), demoPatient()), Seed: 1, Logger: d.log})
	if err != nil {
		return err
	}
	d.sbvz = sb
	sc := p.Servers[testpki.ServerSBVZ]
	scert, err := mtls.Certificate(sc.Key, sc.Chain)
	if err != nil {
		return err
	}
	stc, err := sb.TLSConfig(scert, p.RootCerts())
	if err != nil {
		return err
	}
	sbvzAddr, err := d.serveTLS(sb, stc)
	if err != nil {
		return err
	}
	d.sbvzAddr = sbvzAddr
	_, sbvzPort, _ := net.SplitHostPort(sbvzAddr)
	d.say("SBV-Z simulator  https://localhost:%s", sbvzPort)

	// The gateway, from a configuration file like a production one.
	cfgDir := filepath.Join(d.dir, "config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return err
	}
	files := map[string][]*x509.Certificate{
		"uzi-roots.pem": p.RootCerts(), "uzi-intermediates.pem": p.IntermediateCerts(),
		"lsp-ca.pem": {lc.Chain[len(lc.Chain)-1]},
		// The token holds only the server certificate; the chain above it:
		"server-chain.pem": p.Server.Chain[1:],
	}
	for name, certs := range files {
		if err := writePEM(filepath.Join(cfgDir, name), certs); err != nil {
			return err
		}
	}
	var crlFiles []string
	for name, crl := range p.CRLs {
		f := filepath.Join(cfgDir, "crl-"+name+".crl")
		if err := os.WriteFile(f, crl.Raw, 0o600); err != nil {
			return err
		}
		crlFiles = append(crlFiles, f)
	}
	for name, secret := range map[string]string{"xis.token": uuid.NewString(), "admin.token": uuid.NewString()} {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
	}
	cb, err := d.startCallback()
	if err != nil {
		return err
	}
	y := fmt.Sprintf(`# Written by aortagw demo. Strict mode is on (the default).
xis:
  addr: 127.0.0.1:0
  auth: bearer
  bearer_token_file: %[1]s/xis.token
admin:
  addr: 127.0.0.1:0
  bearer_token_file: %[1]s/admin.token
lsp:
  endpoint: https://localhost:%[2]s/zim
  ca_file: %[1]s/lsp-ca.pem
  timeout: 10s
hsm:
  key_uri: "%[3]s"
  allowed_modules: [%[4]s]
  chain_file: %[1]s/server-chain.pem
store:
  dsn: sqlite:%[5]s/aortagw.db
trust:
  uzi_roots_file: %[1]s/uzi-roots.pem
  intermediates_file: %[1]s/uzi-intermediates.pem
  crl_files: [%[6]s]
tokens:
  application_id: "%[7]s"
triggers:
  poll_interval: 100ms
  backoff: 200ms
  callback_prefixes: [%[8]s]
log:
  level: warn
`, cfgDir, lspPort, p.Server.KeyURI, d.opts.ModulePath, d.dir, strings.Join(crlFiles, ", "), demoAppID, cb)
	cfgFile := filepath.Join(d.dir, "aortagw.yaml")
	if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
		return err
	}
	cfg := DefaultConfig()
	if err := cfg.LoadFile(cfgFile); err != nil {
		return err
	}
	if d.storeDSN != "" {
		cfg.Store.DSN = d.storeDSN
	}
	d.cfg = cfg
	rt, err := Open(ctx, cfg, d.log)
	if err != nil {
		return err
	}
	d.rt = rt
	d.stop = append(d.stop, rt.Close)
	if err := rt.Server.Start(ctx); err != nil {
		return err
	}
	d.stop = append(d.stop, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Server.Shutdown(sctx)
	})
	d.xis, d.admin = "http://"+rt.Server.XISAddr(), "http://"+rt.Server.AdminAddr()
	d.say("gateway          XIS %s, admin %s", d.xis, d.admin)
	d.say("                 config %s, store sqlite, server key via PKCS#11", cfgFile)
	return nil
}

const demoAppID = "2026"

// startCallback is the XIS's endpoint for trigger results.
func (d *demo) startCallback() (string, error) {
	got := make(chan []byte, 8)
	d.callbacks = got
	addr, err := d.serveTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		select {
		case got <- b:
		default:
		}
	}), nil)
	if err != nil {
		return "", err
	}
	return "http://" + addr + "/xis/results", nil
}

func (d *demo) openCardKey(ctx context.Context, c *testpki.Cert) (*pkcs11.Key, error) {
	k, err := pkcs11.Open(ctx, c.KeyURI, pkcs11.Options{AllowedModules: []string{d.opts.ModulePath}, Logger: d.log})
	if err != nil {
		return nil, err
	}
	d.stop = append(d.stop, func() { _ = k.Close() })
	return k, nil
}

func (d *demo) stepEnrol(ctx context.Context) error {
	p := d.pki
	pat := demoPatient()
	ep, err := sbvz.EndpointsFor("https://localhost:" + portOf(d.sbvzURL()))
	if err != nil {
		return err
	}
	cl, err := sbvz.NewClient(sbvz.ClientConfig{Endpoints: ep, Key: d.rt.Key, Chain: d.rt.Chain,
		PinnedCAs: []*x509.Certificate{p.Servers[testpki.ServerSBVZ].Chain[len(p.Servers[testpki.ServerSBVZ].Chain)-1]},
		Timeout:   10 * time.Second, Logger: d.log})
	if err != nil {
		return err
	}
	defer cl.Close()
	doc := sbvz.SimDocuments()[0]
	wid, err := cl.CheckDocument(ctx, sbvz.DocumentQuery{Number: doc.Number, Kind: doc.Kind})
	if err != nil {
		return fmt.Errorf("WID check: %w", err)
	}
	if !wid.Usable() {
		return fmt.Errorf("WID check: document %s is %s", doc.Number, wid.Status)
	}
	d.say("WID check   passport %s: %s (valid until %s)", doc.Number, wid.Status, wid.ValidUntil)
	res, err := cl.Verify(ctx, sbvz.Query{
		Person:  sbvz.Person{BSN: pat.BSN, BirthDate: pat.BirthDate, Sex: pat.Sex, Surname: pat.Surname, SurnamePrefix: pat.SurnamePrefix},
		Address: sbvz.Address{HouseNumber: pat.Address.HouseNumber, PostalCode: pat.Address.PostalCode},
	})
	if err != nil {
		return fmt.Errorf("BSN check: %w", err)
	}
	if res.Outcome != sbvz.OutcomeFound {
		return fmt.Errorf("BSN check: outcome %s (codes %v)", res.Outcome, res.Codes())
	}
	d.say("BSN check   %s (%s %s %s, born %s): verified by SBV-Z (outcome %s)", pat.BSN, pat.GivenNames, pat.SurnamePrefix, pat.Surname, pat.BirthDate, res.Outcome)

	key, err := d.openCardKey(ctx, d.giver.Auth)
	if err != nil {
		return fmt.Errorf("open the caregiver's authentication key: %w", err)
	}
	s, err := tokens.NewSigner(key, d.giver.Auth.Chain, tokens.WithEmbeddedCertificate(true))
	if err != nil {
		return err
	}
	tok, err := s.SignEnrolment(tokens.Enrolment{URA: d.giver.URA, BSN: pat.BSN})
	if err != nil {
		return err
	}
	d.enrolment = tok.Bytes()
	d.say("enrolment   %s signed with %s's AUT key in SoftHSM (PKCS#11), valid until %s",
		tok.ID(), d.giver.Person, tok.NotOnOrAfter().Format("2006-01-02"))
	return nil
}

func (d *demo) sbvzURL() string { return d.sbvzAddr }

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func (d *demo) stepMandate(ctx context.Context) error {
	key, err := d.openCardKey(ctx, d.giver.Sign)
	if err != nil {
		return fmt.Errorf("open the caregiver's non-repudiation key: %w", err)
	}
	s, err := tokens.NewSigner(key, d.giver.Sign.Chain, tokens.WithEmbeddedCertificate(true))
	if err != nil {
		return err
	}
	until := time.Now().AddDate(1, 0, 0)
	if na := d.giver.Sign.Cert.NotAfter; na.Before(until) {
		until = na
	}
	app := tokens.AppIDPrefix + demoAppID
	tok, err := s.SignMandate(tokens.Mandate{URA: d.giver.URA, Mandated: []string{d.actor.UZI, app},
		Context: d.cfg.Interactions[hl7.QURXQuery].Context, ApplicationID: app, NotOnOrAfter: until})
	if err != nil {
		return err
	}
	d.mandate = tok.Bytes()
	d.say("mandate     %s: %s mandates %s and application %s", tok.ID(), d.giver.Person, d.actor.Person, demoAppID)
	d.say("            for %s, until %s;", d.cfg.Interactions[hl7.QURXQuery].Context, until.Format("2006-01-02"))
	d.say("            signed with the HND key (PIN from %s, CKA_ALWAYS_AUTHENTICATE)", filepath.Base(d.giver.PINFile))
	for _, r := range []struct {
		typ string
		raw []byte
	}{{"enrolment", d.enrolment}, {"mandate", tok.Bytes()}} {
		v, err := d.registerToken(r.typ, r.raw, "demo")
		if err != nil {
			return err
		}
		d.say("registered  %-9s %s via POST /v1/admin/tokens: validated (chain, CRL, key use), HTTP %d", r.typ, v.ID, http.StatusCreated)
	}
	return nil
}

// registerToken registers a signed token of type typ ("enrolment",
// "mandate") through the admin API at d.admin.
func (d *demo) registerToken(typ string, raw []byte, by string) (TokenView, error) {
	var v TokenView
	st, body, err := d.adminCall(http.MethodPost, "/v1/admin/tokens?type="+typ+"&by="+by, raw)
	if err != nil {
		return v, err
	}
	if st != http.StatusCreated {
		return v, fmt.Errorf("register %s: HTTP %d: %s", typ, st, body)
	}
	_ = json.Unmarshal(body, &v)
	return v, nil
}

func (d *demo) adminCall(method, path string, body []byte) (int, []byte, error) {
	tok, err := ReadSecretFile(filepath.Join(d.dir, "config", "admin.token"))
	if err != nil {
		return 0, nil, err
	}
	return d.call(method, d.admin+path, string(tok), "application/xml", body)
}

func (d *demo) call(method, url, bearer, ct string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (d *demo) stepQuery(ctx context.Context) error {
	tok, err := ReadSecretFile(filepath.Join(d.dir, "config", "xis.token"))
	if err != nil {
		return err
	}
	pat := demoPatient()
	body, err := hl7.BuildQuery(hl7.QueryParams{Interaction: hl7.QURXQuery,
		MessageID: hl7.ID{Root: "2.16.840.1.113883.2.4.6.6." + demoAppID + ".1", Ext: "demo-" + uuid.NewString()[:8]},
		Created:   time.Now(), SenderApp: demoAppID, BSN: pat.BSN,
		Author:   hl7.Person{UZI: d.actor.UZI, Role: d.actor.Role, URA: d.actor.URA},
		Overseer: &hl7.Person{UZI: d.giver.UZI, Role: d.giver.Role, URA: d.giver.URA}})
	if err != nil {
		return err
	}
	t0 := time.Now()
	st, answer, err := d.call(http.MethodPost, d.xis+"/", string(tok), "text/xml; charset=utf-8", envelope(body))
	if err != nil {
		return err
	}
	if st != http.StatusOK {
		return fmt.Errorf("query: HTTP %d: %s", st, answer)
	}
	d.say("XIS -> gateway  %s for BSN %s by %s under %s's mandate", hl7.QURXQuery, pat.BSN, d.actor.Person, d.giver.Person)
	d.say("gateway -> XIS  HTTP %d, %d bytes, the LSP's answer unchanged (%s round trip)", st, len(answer), time.Since(t0).Round(time.Millisecond))

	treq := TriggerRequest{Kind: TriggerDossierOpened, Interaction: hl7.QURXQuery, BSN: pat.BSN,
		Author: Person{UZI: d.actor.UZI, Role: d.actor.Role}, Overseer: Person{UZI: d.giver.UZI, Role: d.giver.Role},
		Callback: d.cfg.Triggers.CallbackPrefixes[0], Key: "demo-dossier-" + uuid.NewString()[:8]}
	tb, _ := json.Marshal(treq)
	st, resp, err := d.call(http.MethodPost, d.xis+"/v1/triggers", string(tok), "application/json", tb)
	if err != nil {
		return err
	}
	if st != http.StatusAccepted {
		return fmt.Errorf("trigger: HTTP %d: %s", st, resp)
	}
	var v TriggerView
	if err := json.Unmarshal(resp, &v); err != nil {
		return err
	}
	d.say("trigger         %s queued as job %s (POST /v1/triggers, HTTP %d)", treq.Kind, v.ID, st)
	select {
	case cb := <-d.callbacks:
		var r struct {
			ID string `json:"id"`
			TriggerResult
		}
		if err := json.Unmarshal(cb, &r); err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("trigger result: status %d fault %s: %s", r.Status, r.Fault, r.Body)
		}
		d.say("callback        job %s: LSP answered HTTP %d (%d bytes), POSTed to the XIS", r.ID, r.Status, len(r.Body))
	case <-time.After(20 * time.Second):
		return errors.New("no trigger callback within 20s")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (d *demo) stepShow(ctx context.Context) error {
	acc := d.lspSim.Accepted()
	d.say("The LSP accepted %d messages, each with three tokens:", len(acc))
	for _, r := range acc {
		d.say("  %s %s author %-16s enrolment %s", r.Time.Local().Format("15:04:05"), r.Interaction, r.Author, short(r.EnrolmentID))
		d.say("  %8s %15s mandate %s transaction %s (%d results)", "", "", short(r.MandateID), short(r.TransactionID), r.Results)
	}
	recs, err := d.rt.Store.AuditRecords(ctx, store.AuditFilter{})
	if err != nil {
		return err
	}
	d.say("Audit trail (%d records, hash-chained):", len(recs))
	for _, r := range recs {
		who := r.Actor
		if r.Giver != "" {
			who += " under " + r.Giver
		}
		d.say("  #%-2d %-16s %-8s %-28s %s", r.Seq, r.Kind, r.Outcome, who, strings.Join(shortAll(r.TokenIDs), " "))
	}
	rep, err := d.rt.Store.VerifyChain(ctx)
	if err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("audit chain broken: %v", rep.Problems)
	}
	d.say("Chain verified: %d records intact, head %s...", rep.Records, rep.HeadHash[:16])
	d.say("Later: aortagw audit verify --db sqlite:%s/aortagw.db", d.dir)
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}
