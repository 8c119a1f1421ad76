package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/testpki"
)

// newSimLSPCmd runs the strict LSP (ZIM) simulator behind mutual TLS.
func newSimLSPCmd() *cobra.Command {
	var (
		listen, admin, pkiDir string
		seed                  int64
		patients              int
	)
	cmd := &cobra.Command{
		Use:   "lsp",
		Short: "Run the LSP (ZIM) simulator",
		Long: `Run a strict LSP (ZIM) simulator for tests and demos.

It serves HTTPS with the test PKI's "lsp" server certificate and requires a
client certificate from the UZI server CA (type S). Every message is checked
against the rules of the AORTA token specification (tokens, bindings, BSN,
replay, the URA of the TLS client); refusals are SOAP faults with specific
codes (docs/lsp.md). Accepted queries get HL7v3 answers from a seeded
synthetic dataset. GET /sim/accepted lists what was accepted (also on
--admin, plain HTTP, loopback only).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "lsp-sim")
			p, err := testpki.Load(pkiDir)
			if err != nil {
				return fmt.Errorf("load test pki (dir=%s): %w", pkiDir, err)
			}
			cert, closeKey, err := simServerCert(ctx, p, testpki.ServerLSP)
			if err != nil {
				return err
			}
			defer closeKey()
			sim, err := newPKISimulator(p, seed, patients, logger)
			if err != nil {
				return err
			}
			srv := &http.Server{
				Addr: listen, Handler: sim, TLSConfig: sim.TLSConfig(cert),
				ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second,
				ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			errc := make(chan error, 2)
			go func() { errc <- srv.ServeTLS(ln, "", "") }()
			var adminSrv *http.Server
			if admin != "" {
				host, _, err := net.SplitHostPort(admin)
				if err != nil || !isLoopback(host) {
					_ = srv.Close()
					return fmt.Errorf("--admin must be a loopback address (got %q)", admin)
				}
				mux := http.NewServeMux()
				mux.HandleFunc("GET /sim/accepted", sim.ServeAccepted)
				adminSrv = &http.Server{Addr: admin, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
				aln, err := net.Listen("tcp", admin)
				if err != nil {
					_ = srv.Close()
					return err
				}
				go func() { errc <- adminSrv.Serve(aln) }()
			}
			logger.Info("lsp simulator listening", "addr", ln.Addr().String(), "admin", admin,
				"patients", len(sim.Dataset().BSNs()), "example_bsns", lsp.WellKnownBSNs)
			select {
			case <-ctx.Done():
			case err := <-errc:
				if !errors.Is(err, http.ErrServerClosed) {
					return err
				}
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if adminSrv != nil {
				_ = adminSrv.Shutdown(sctx)
			}
			return srv.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	cmd.Flags().StringVar(&admin, "admin", "", "optional loopback address for plain-HTTP GET /sim/accepted")
	cmd.Flags().StringVar(&pkiDir, "pki", "", "test PKI directory (written by `aortagw pki init`)")
	cmd.Flags().Int64Var(&seed, "seed", 1, "seed of the synthetic patient dataset")
	cmd.Flags().IntVar(&patients, "patients", 50, "number of generated patients (plus the well-known test BSNs)")
	_ = cmd.MarkFlagRequired("pki")
	return cmd
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// simServerCert returns the TLS certificate of a test-PKI server; a key in
// SoftHSM is opened through pkcs11.
func simServerCert(ctx context.Context, p *testpki.PKI, name string) (tls.Certificate, func(), error) {
	c, ok := p.Servers[name]
	if !ok {
		return tls.Certificate{}, nil, fmt.Errorf("test pki has no %q server certificate", name)
	}
	if c.Key != nil {
		cert, err := mtls.Certificate(c.Key, c.Chain)
		return cert, func() {}, err
	}
	key, err := pkcs11.Open(ctx, c.KeyURI, pkcs11.Options{AllowedModules: []string{p.Module}})
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("open %s key: %w", name, err)
	}
	cert, err := mtls.Certificate(key, c.Chain)
	if err != nil {
		_ = key.Close()
		return tls.Certificate{}, nil, err
	}
	return cert, func() { _ = key.Close() }, nil
}

// newPKISimulator wires a simulator to a test PKI: client certificates from
// its UZI server CA, tokens checked against its roots, CRLs and directory.
func newPKISimulator(p *testpki.PKI, seed int64, patients int, logger *slog.Logger) (*lsp.Simulator, error) {
	return lsp.NewTrustingSimulator(lsp.SimConfig{Seed: seed, Dataset: lsp.NewDataset(seed, patients, time.Now()), Logger: logger},
		lsp.Trust{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
			Signers: p.LeafCerts(), ClientCA: p.CAs[testpki.CAServer].Cert})
}
