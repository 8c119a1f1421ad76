package sbvz

import (
	"context"
	"crypto/x509"
	"errors"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if fillChildMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

// tlsLog collects the TLS handshake errors of the test servers.
var tlsLog syncBuffer

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	pki *testPKI
	sim *Simulator
	srv *httptest.Server
	cli *Client
}

// startSim runs the simulator behind real mutual TLS.
func startSim(t testing.TB, pki *testPKI, cfg SimConfig, h func(http.Handler) http.Handler, clientCAs ...*x509.Certificate) (*Simulator, *httptest.Server) {
	t.Helper()
	sim, err := NewSimulator(cfg)
	require.NoError(t, err)
	if clientCAs == nil {
		clientCAs = []*x509.Certificate{pki.ca.cert}
	}
	cert, err := mtls.Certificate(pki.simServer.key, pki.simServer.chain())
	require.NoError(t, err)
	tcfg, err := sim.TLSConfig(cert, clientCAs)
	require.NoError(t, err)
	var handler http.Handler = sim
	if h != nil {
		handler = h(sim)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = tcfg
	srv.Config.ErrorLog = log.New(&tlsLog, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return sim, srv
}

func newTestClient(t testing.TB, pki *testPKI, srv *httptest.Server, client *testCert, mod func(*ClientConfig)) *Client {
	t.Helper()
	ep, err := EndpointsFor(srv.URL)
	require.NoError(t, err)
	cfg := ClientConfig{Endpoints: ep, Key: client.key, Chain: client.chain(),
		PinnedCAs: []*x509.Certificate{pki.ca.cert}, ServerName: "localhost", Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newEnv(t *testing.T, simCfg SimConfig) *env {
	t.Helper()
	pki := sharedPKI(t)
	sim, srv := startSim(t, pki, simCfg, nil)
	return &env{pki: pki, sim: sim, srv: srv, cli: newTestClient(t, pki, srv, pki.client, nil)}
}

func path1(p SimPerson) Query {
	return Query{Person: Person{BirthDate: p.BirthDate, Sex: p.Sex}, Address: Address{PostalCode: p.Address.PostalCode, HouseNumber: p.Address.HouseNumber}}
}

func path2(p SimPerson) Query {
	return Query{Person: Person{BirthDate: p.BirthDate, Sex: p.Sex, Surname: p.Surname}}
}

func TestPersonas(t *testing.T) {
	e := newEnv(t, SimConfig{Seed: 1})
	ctx := context.Background()
	found, twinA, secret := Persona("found"), Persona("twin-a"), Persona("secret")
	deceased, onderzoek, rni := Persona("deceased"), Persona("onderzoek"), Persona("non-resident")

	verifyTwin := path1(twinA)
	verifyTwin.Person.BSN = twinA.BSN
	deviating := path2(found)
	deviating.Person.GivenNames = "Johannes"
	deviating.Address.Street = "Herengracht"
	rniPath1 := Query{Person: Person{BirthDate: rni.BirthDate, Sex: rni.Sex}, Address: Address{PostalCode: "1015CN", HouseNumber: "10"}}

	tests := []struct {
		name   string
		q      Query
		verify bool
		check  func(t *testing.T, r *Result)
	}{
		{"found by path 1", path1(found), false, func(t *testing.T, r *Result) {
			assert.Equal(t, OutcomeFound, r.Outcome)
			assert.Equal(t, found.BSN, r.BSN)
			assert.Equal(t, []string{CodeFound}, r.Codes())
			assert.Equal(t, "Keizersgracht", r.Address.Street.Value)
			assert.False(t, r.Secret)
			assert.Nil(t, r.Deceased)
		}},
		{"found by path 2", path2(found), false, func(t *testing.T, r *Result) {
			assert.Equal(t, found.BSN, r.BSN)
			assert.Equal(t, "de", r.Person.SurnamePrefix.Value)
		}},
		{"deviating fields marked", deviating, false, func(t *testing.T, r *Result) {
			assert.Equal(t, OutcomeDeviating, r.Outcome)
			assert.ElementsMatch(t, []string{"Persoon/Voornamen", "Adres/Straatnaam"}, r.Deviating())
			assert.True(t, r.HasCode(CodeFound))
		}},
		{"twins path 1 not unique", path1(twinA), false, func(t *testing.T, r *Result) {
			assert.Equal(t, OutcomeFailed, r.Outcome)
			assert.Equal(t, []string{CodeNotUnique}, r.Codes())
			assert.Empty(t, r.BSN)
		}},
		{"twin verify by bsn", verifyTwin, true, func(t *testing.T, r *Result) {
			assert.Equal(t, OutcomeFound, r.Outcome)
			assert.Equal(t, twinA.BSN, r.BSN)
			assert.Equal(t, "Daan", r.Person.GivenNames.Value)
		}},
		{"secret registration", path2(secret), false, func(t *testing.T, r *Result) {
			assert.True(t, r.Secret)
			assert.Equal(t, SecretRestricted, r.SecretText)
		}},
		{"deceased", path2(deceased), false, func(t *testing.T, r *Result) {
			require.NotNil(t, r.Deceased)
			assert.Equal(t, "20240817", r.Deceased.String())
			assert.Equal(t, "Overlijden", r.SuspensionReason)
		}},
		{"in onderzoek", path1(onderzoek), false, func(t *testing.T, r *Result) {
			assert.True(t, r.InOnderzoek())
			require.Len(t, r.Investigations, 2)
			assert.Equal(t, Investigation{"persoon", "Geboortedatum is in onderzoek", "20250301"}, r.Investigations[0])
			assert.Equal(t, "adres", r.Investigations[1].Category)
		}},
		{"non-resident path 2", path2(rni), false, func(t *testing.T, r *Result) {
			assert.Equal(t, rni.BSN, r.BSN)
			assert.Equal(t, "Persoonslijst aangelegd in de RNI", r.SuspensionReason)
			assert.Equal(t, "Duitsland", r.Address.ForeignCountry)
		}},
		{"non-resident path 1 not found", rniPath1, false, func(t *testing.T, r *Result) {
			assert.Equal(t, OutcomeFailed, r.Outcome)
			assert.Equal(t, []string{CodeNotFound}, r.Codes())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r *Result
			var err error
			if tc.verify {
				r, err = e.cli.Verify(ctx, tc.q)
			} else {
				r, err = e.cli.Lookup(ctx, tc.q)
			}
			require.NoError(t, err)
			tc.check(t, r)
		})
	}
	recs := e.sim.Records()
	require.Len(t, recs, len(tests))
	for _, rec := range recs {
		id, err := uzi.Parse(e.pki.client.cert)
		require.NoError(t, err)
		assert.Equal(t, id.URA, rec.ClientURA)
		assert.NotEmpty(t, rec.LocalRef)
	}
}

func TestPersonDataAndDocuments(t *testing.T) {
	e := newEnv(t, SimConfig{Seed: 1})
	ctx := context.Background()
	p := Persona("secret")
	r, err := e.cli.PersonData(ctx, p.BSN)
	require.NoError(t, err)
	assert.Equal(t, OutcomeFound, r.Outcome)
	assert.Equal(t, p.BSN, r.BSN)
	assert.True(t, r.Secret)
	assert.Equal(t, []string{CodePersonFound}, r.Codes())

	r, err = e.cli.PersonData(ctx, TestBSN(900))
	require.NoError(t, err)
	assert.Equal(t, OutcomeFailed, r.Outcome)

	_, err = e.cli.PersonData(ctx, Persona("other-bsn").BSN)
	require.ErrorIs(t, err, ErrBSNMismatch)

	docs := []struct {
		name   string
		q      DocumentQuery
		status DocumentStatus
		usable bool
	}{
		{"valid passport", DocumentQuery{"NXC4R7T18", DocPassport}, DocValid, true},
		{"stolen id card", DocumentQuery{"IPK9L2M35", DocIDCard}, DocStolen, false},
		{"expired passport", DocumentQuery{"NWP3H8D21", DocPassport}, DocExpired, false},
		{"unknown", DocumentQuery{"XX1234567", DocPassport}, DocUnknown, false},
	}
	for _, tc := range docs {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.cli.CheckDocument(ctx, tc.q)
			require.NoError(t, err)
			assert.Equal(t, tc.status, d.Status)
			assert.Equal(t, tc.usable, d.Usable())
		})
	}
	_, err = e.cli.CheckDocument(ctx, DocumentQuery{"abc", DocPassport})
	require.ErrorIs(t, err, ErrInvalidQuery)

	id, err := e.cli.CreateAppointment(ctx, 1000, "initiële vulling")
	require.NoError(t, err)
	assert.Equal(t, []string{id}, e.sim.Appointments())
	require.NoError(t, e.cli.DeleteAppointment(ctx, id))
	assert.Empty(t, e.sim.Appointments())
	require.Error(t, e.cli.DeleteAppointment(ctx, id))
}

func TestFaultModes(t *testing.T) {
	e := newEnv(t, SimConfig{Seed: 1, SlowDelay: 2 * time.Second})
	ctx := context.Background()
	verifyQ := func(key string) Query {
		p := Persona(key)
		q := path2(p)
		q.Person.BSN = p.BSN
		return q
	}
	t.Run("wrong lokaalkenmerk", func(t *testing.T) {
		_, err := e.cli.Lookup(ctx, path2(Persona("wrong-ref")))
		require.ErrorIs(t, err, ErrLocalRefMismatch)
		require.ErrorIs(t, err, ErrProtocol)
	})
	t.Run("other bsn on verify", func(t *testing.T) {
		_, err := e.cli.Verify(ctx, verifyQ("other-bsn"))
		require.ErrorIs(t, err, ErrBSNMismatch)
	})
	t.Run("server fault", func(t *testing.T) {
		_, err := e.cli.Lookup(ctx, path2(Persona("server-error")))
		var f *FaultError
		require.ErrorAs(t, err, &f)
		assert.Equal(t, http.StatusInternalServerError, f.HTTPStatus)
		assert.Equal(t, "soap:Server", f.Code)
		assert.False(t, f.Client())
		assert.ErrorIs(t, err, ErrFault)
	})
	t.Run("unavailable", func(t *testing.T) {
		_, err := e.cli.Lookup(ctx, path2(Persona("unavailable")))
		var f *FaultError
		require.ErrorAs(t, err, &f)
		assert.Equal(t, http.StatusServiceUnavailable, f.HTTPStatus)
		assert.Empty(t, f.Code)
	})
	t.Run("answer over the size cap", func(t *testing.T) {
		c := newTestClient(t, e.pki, e.srv, e.pki.client, func(c *ClientConfig) { c.MaxResponseBytes = 512 })
		_, err := c.Lookup(ctx, path2(Persona("found")))
		require.ErrorIs(t, err, ErrResponseTooLarge)
	})
	t.Run("timeout", func(t *testing.T) {
		c := newTestClient(t, e.pki, e.srv, e.pki.client, func(c *ClientConfig) { c.Timeout = 200 * time.Millisecond })
		_, err := c.Lookup(ctx, path2(Persona("slow")))
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("caller deadline", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := e.cli.Lookup(cctx, path2(Persona("slow")))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// The simulator noticed the caller leaving and sent no late answer.
		assert.Eventually(t, func() bool {
			n := 0
			for _, r := range e.sim.Records() {
				if r.Outcome == "abandoned" {
					n++
				}
			}
			return n == 2 // this one and the client-timeout case above
		}, 5*time.Second, 10*time.Millisecond)
	})
}

func TestRefusedBeforeSending(t *testing.T) {
	e := newEnv(t, SimConfig{Seed: 1})
	ctx := context.Background()
	f := Persona("found")
	bad := TestBSN(1)
	bad = bad[:8] + string(rune('0'+(int(bad[8]-'0')+1)%10))
	tests := []struct {
		name   string
		q      Query
		verify bool
		want   error
	}{
		{"eleven-test", Query{Person: Person{BSN: bad, BirthDate: f.BirthDate, Sex: "M", Surname: "Vries"}}, true, ErrInvalidBSN},
		{"verify without bsn", path2(f), true, ErrInvalidQuery},
		{"lookup with bsn", Query{Person: Person{BSN: f.BSN, BirthDate: f.BirthDate, Sex: "M", Surname: "Vries"}}, false, ErrInvalidQuery},
		{"no birth date", Query{Person: Person{Sex: "M", Surname: "Vries"}}, false, ErrSearchPath},
		{"path 1 without huisnummer", Query{Person: Person{BirthDate: f.BirthDate, Sex: "M"}, Address: Address{PostalCode: "1015CN"}}, false, ErrSearchPath},
		{"bad postcode", Query{Person: Person{BirthDate: f.BirthDate, Sex: "M"}, Address: Address{PostalCode: "1015 CN", HouseNumber: "10"}}, false, ErrInvalidQuery},
		{"bad sex", Query{Person: Person{BirthDate: f.BirthDate, Sex: "X", Surname: "Vries"}}, false, ErrInvalidQuery},
		{"bad date", Query{Person: Person{BirthDate: "19700231", Sex: "M", Surname: "Vries"}}, false, ErrInvalidQuery},
		{"control char", Query{Person: Person{BirthDate: f.BirthDate, Sex: "M", Surname: "Vr\x01ies"}}, false, ErrInvalidQuery},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.verify {
				_, err = e.cli.Verify(ctx, tc.q)
			} else {
				_, err = e.cli.Lookup(ctx, tc.q)
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, err := e.cli.PersonData(ctx, bad)
	require.ErrorIs(t, err, ErrInvalidBSN)
	assert.Empty(t, e.sim.Records(), "refused questions must not reach SBV-Z")
	assert.InDelta(t, 2, testutil.ToFloat64(e.cli.reqs.WithLabelValues("verify", "refused")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(e.cli.reqs.WithLabelValues("persondata", "refused")), 0)
}

func TestWrongClientCertificates(t *testing.T) {
	pki := sharedPKI(t)
	// The simulator trusts the card root too, so a Z card certificate is
	// offered and must be refused by the UZI type check, not by the chain.
	sim, srv := startSim(t, pki, SimConfig{Seed: 1}, nil, pki.ca.cert, pki.cardRoot.cert)
	ctx := context.Background()
	q := path2(Persona("found"))
	tests := []struct {
		name      string
		client    *testCert
		serverLog string
	}{
		{"uzi card (type Z) certificate", pki.clientZ, "not a uzi server (type S) certificate"},
		// Go only offers a client certificate matching the acceptable CAs the
		// server names, so this one is never sent.
		{"server certificate from another CA", pki.otherClient, "didn't provide a certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Our Client refuses such a certificate at construction, so talk
			// to the simulator with a bare mTLS HTTP client.
			_, err := NewClient(ClientConfig{Endpoints: Endpoints{Verify: srv.URL + PathVerify}, Key: tc.client.key, Chain: tc.client.chain(), PinnedCAs: []*x509.Certificate{pki.ca.cert}})
			if tc.client == pki.clientZ {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "not a uzi server certificate")
			}
			cert, err := mtls.Certificate(tc.client.key, tc.client.chain())
			require.NoError(t, err)
			tcfg, err := mtls.ClientConfig(cert, []*x509.Certificate{pki.ca.cert}, "localhost")
			require.NoError(t, err)
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tcfg}, Timeout: 5 * time.Second}
			defer hc.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodPost, srv.URL+PathVerify, strings.NewReader(string(buildVerifyRequest(q, "ref"))))
			require.NoError(t, err)
			req.Header.Set("SOAPAction", `"`+ActionVerify+`"`)
			req.Header.Set("Content-Type", "text/xml; charset=utf-8")
			resp, err := hc.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "tls")
			if !assert.Eventually(t, func() bool { return strings.Contains(tlsLog.String(), tc.serverLog) }, 2*time.Second, 10*time.Millisecond) {
				t.Log(tlsLog.String())
			}
		})
	}
	t.Run("key of another certificate", func(t *testing.T) {
		_, err := NewClient(ClientConfig{Endpoints: Endpoints{Verify: srv.URL + PathVerify}, Key: pki.otherClient.key, Chain: pki.client.chain(), PinnedCAs: []*x509.Certificate{pki.ca.cert}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "key does not belong")
	})
	t.Run("server not in pinned set", func(t *testing.T) {
		c := newTestClient(t, pki, srv, pki.client, func(c *ClientConfig) { c.PinnedCAs = []*x509.Certificate{pki.otherCA.cert} })
		_, err := c.Lookup(ctx, q)
		var uerr x509.UnknownAuthorityError
		require.ErrorAs(t, err, &uerr)
	})
	assert.Empty(t, sim.Records())
	// Without TLS at all the handler refuses too.
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathVerify, strings.NewReader("<x/>")))
	assert.Equal(t, http.StatusForbidden, rec.Code)
}

func TestMetricsRegistered(t *testing.T) {
	pki := sharedPKI(t)
	_, srv := startSim(t, pki, SimConfig{Seed: 1}, nil)
	reg := prometheus.NewRegistry()
	c := newTestClient(t, pki, srv, pki.client, func(c *ClientConfig) { c.Registerer = reg })
	_, err := c.Lookup(context.Background(), path2(Persona("found")))
	require.NoError(t, err)
	_, err = c.Lookup(context.Background(), path1(Persona("twin-a")))
	require.NoError(t, err)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aortagw_sbvz_client_requests_total SBV-Z requests by operation and result (G, A, F, fault, error, refused).
# TYPE aortagw_sbvz_client_requests_total counter
aortagw_sbvz_client_requests_total{operation="lookup",result="F"} 1
aortagw_sbvz_client_requests_total{operation="lookup",result="G"} 1
`), "aortagw_sbvz_client_requests_total"))
	// A second client on the same registry is refused, not silently shared.
	_, err = NewClient(ClientConfig{Endpoints: c.cfg.Endpoints, Key: pki.client.key, Chain: pki.client.chain(), PinnedCAs: []*x509.Certificate{pki.ca.cert}, Registerer: reg})
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	_, err := EndpointsFor("http://example.org")
	require.Error(t, err)
	ep, err := EndpointsFor("acceptance")
	require.NoError(t, err)
	assert.Equal(t, "https://webservice-acc.sbv-z.nl/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx", ep.Verify)
	assert.Empty(t, ep.Document)
	_, err = NewClient(ClientConfig{Endpoints: ep})
	require.Error(t, err)
	pki := sharedPKI(t)
	c, err := NewClient(ClientConfig{Endpoints: ep, Key: pki.client.key, Chain: []*x509.Certificate{pki.client.cert}, PinnedCAs: []*x509.Certificate{pki.ca.cert}})
	require.NoError(t, err)
	_, err = c.CheckDocument(context.Background(), DocumentQuery{"NXC4R7T18", DocPassport})
	require.ErrorIs(t, err, ErrNotConfigured)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	assert.True(t, errors.Is(&FaultError{Code: "soap:Client"}, ErrFault))
}

// benchEnv starts a simulator and a client for benchmarks.
func benchEnv(b *testing.B, pki *testPKI) *Client {
	_, srv := startSim(b, pki, SimConfig{Seed: 1}, nil)
	return newTestClient(b, pki, srv, pki.client, nil)
}
