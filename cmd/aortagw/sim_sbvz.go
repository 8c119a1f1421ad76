package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/sbvz"
	"github.com/aortagw/aortagw/testpki"
)

func newSimSBVZCmd() *cobra.Command {
	var listen, pkiDir string
	var seed int64
	var persons int
	var slow time.Duration
	cmd := &cobra.Command{
		Use:   "sbvz --listen ADDR --pki DIR",
		Short: "Run the SBV-Z simulator (mutual TLS; accepts only UZI server certificates of the test PKI)",
		Long: `Runs a strict SBV-Z simulator: OpvragenVerifieren (mrt21), OpvragenPersoonsgegevens (dec14)
and the proposed WID and afspraak operations, over mutual TLS with the test PKI's SBV-Z
server certificate. Clients must present a type-S UZI certificate chaining to the test
PKI's server root. The synthetic persons (twins, secret, deceased, in onderzoek,
non-resident, slow and failing ones) are printed at start.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			if pkiDir == "" {
				return errors.New("sim sbvz: --pki is required (write one with `aortagw pki`)")
			}
			p, err := testpki.Load(pkiDir)
			if err != nil {
				return err
			}
			srvCert := p.Servers[testpki.ServerSBVZ]
			if srvCert == nil {
				return fmt.Errorf("sim sbvz: %s has no %q server certificate", pkiDir, testpki.ServerSBVZ)
			}
			var key crypto.Signer = srvCert.Key
			if key == nil {
				k, err := pkcs11.Open(ctx, srvCert.KeyURI, pkcs11.Options{AllowedModules: []string{p.Module}, Logger: log})
				if err != nil {
					return fmt.Errorf("sim sbvz: open server key: %w", err)
				}
				defer k.Close()
				key = k
			}
			list := sbvz.Dataset(seed, persons)
			sim, err := sbvz.NewSimulator(sbvz.SimConfig{Persons: list, SlowDelay: slow, Logger: log})
			if err != nil {
				return err
			}
			tc, err := mtls.Certificate(key, srvCert.Chain)
			if err != nil {
				return err
			}
			tcfg, err := sim.TLSConfig(tc, []*x509.Certificate{p.ServerRoot.Cert})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			printPersonas(cmd, list)
			srv := &http.Server{Handler: sim, TLSConfig: tcfg, ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout: 30 * time.Second, WriteTimeout: slow + 30*time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			log.Info("sbvz simulator listening", "addr", "https://"+ln.Addr().String(), "verify", sbvz.PathVerify, "persondata", sbvz.PathPersonData)
			errc := make(chan error, 1)
			go func() { errc <- srv.ServeTLS(ln, "", "") }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(sctx)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8444", "listen address")
	cmd.Flags().StringVar(&pkiDir, "pki", "", "test PKI directory (from `aortagw pki`)")
	cmd.Flags().Int64Var(&seed, "seed", 1, "seed of the generated persons")
	cmd.Flags().IntVar(&persons, "persons", 40, "number of generated persons besides the fixed personas (max 800)")
	cmd.Flags().DurationVar(&slow, "slow", 3*time.Second, "delay of the slow persona")
	return cmd
}

func printPersonas(cmd *cobra.Command, list []sbvz.SimPerson) {
	w := tabwriter.NewWriter(cmd.ErrOrStderr(), 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "persona\tBSN\tname\tgeboortedatum\tgeslacht\tpostcode\thuisnummer")
	for _, p := range sbvz.Personas() {
		pc, nr := "-", "-"
		if p.Address != nil {
			pc, nr = p.Address.PostalCode, p.Address.HouseNumber
		}
		name := p.GivenNames + " "
		if p.SurnamePrefix != "" {
			name += p.SurnamePrefix + " "
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Key, p.BSN, name+p.Surname, p.BirthDate, p.Sex, pc, nr)
	}
	fmt.Fprintf(w, "(+ %d generated persons)\n", len(list)-len(sbvz.Personas()))
	_ = w.Flush()
}
