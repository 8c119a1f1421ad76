package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/testpki"
)

// newPKICmd wires `aortagw pki init` and `aortagw pki show` to package testpki.
func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create a UZI-shaped test PKI (optionally on SoftHSM tokens)",
	}
	cmd.AddCommand(newPKIInitCmd(), newPKIShowCmd())
	return cmd
}

func newPKIInitCmd() *cobra.Command {
	var (
		out     string
		softhsm bool
		seed    int64
		module  string
		force   bool
		now     string
	)
	c := &cobra.Command{
		Use:   "init --out DIR [--softhsm] [--seed N] [--module PATH] [--force]",
		Short: "Generate the test PKI into DIR (PEM files, CRLs, manifest.json; SoftHSM tokens with --softhsm)",
		Long: `Generate a UZI-shaped test PKI: TEST roots and UZI-register CAs, Z/N/M cards with
AUT/HND/VRT certificates, UZI server certificates, CRLs and edge cases. With --softhsm every
card becomes its own SoftHSM token and the server keys go into the token "hsm"; SoftHSM state
lives in DIR/softhsm (use SOFTHSM2_CONF=DIR/softhsm/softhsm2.conf with other tools).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("pki init: --out is required")
			}
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if err := prepareOutDir(abs, force); err != nil {
				return err
			}
			opts := testpki.Options{Seed: seed, Dir: abs, SoftHSM: softhsm, ModulePath: module}
			if now != "" {
				t, err := time.Parse(time.RFC3339, now)
				if err != nil {
					return fmt.Errorf("pki init: --now: %w", err)
				}
				opts.Now = t
			}
			if softhsm {
				conf := testpki.SoftHSMConfPath(abs)
				if cur := os.Getenv("SOFTHSM2_CONF"); cur != "" && cur != conf {
					return fmt.Errorf("pki init: SOFTHSM2_CONF is set to %s; unset it (the PKI uses %s)", cur, conf)
				}
			}
			p, err := testpki.New(opts)
			if err != nil {
				return err
			}
			if err := p.Write(abs); err != nil {
				return err
			}
			printSummary(cmd.OutOrStdout(), p, abs)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "output directory (must be empty or absent unless --force)")
	f.BoolVar(&softhsm, "softhsm", false, "generate card and server keys inside SoftHSM tokens under DIR/softhsm")
	f.Int64Var(&seed, "seed", 1, "seed for names and numbers (keys and serials are always random)")
	f.StringVar(&module, "module", testpki.DefaultModulePath, "SoftHSM2 PKCS#11 module")
	f.BoolVar(&force, "force", false, "remove an existing non-empty DIR first")
	f.StringVar(&now, "now", "", "freeze the clock (RFC 3339), default now")
	return c
}

// prepareOutDir refuses a non-empty directory unless force is set; with force it removes the
// directory only when it looks like an earlier PKI (manifest.json present) or is empty.
func prepareOutDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("pki init: %s is not empty (use --force to replace it)", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		return fmt.Errorf("pki init: %s is not empty and holds no manifest.json; refusing to delete it even with --force", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

func newPKIShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show DIR",
		Short: "List the cards, certificates and keys of a test PKI from its manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := testpki.Load(args[0])
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(args[0])
			printSummary(cmd.OutOrStdout(), p, abs)
			return nil
		},
	}
}

func printSummary(w io.Writer, p *testpki.PKI, dir string) {
	fmt.Fprintf(w, "test PKI in %s (seed %d, now %s)\n", dir, p.Seed, p.Now.Format(time.RFC3339))
	if p.SoftHSM {
		fmt.Fprintf(w, "SoftHSM tokens: export SOFTHSM2_CONF=%s\n", p.SoftHSMConf)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tURA\tNAME")
	for _, o := range p.Orgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Key, o.URA, o.Name)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CARD\tTYPE\tUZI\tURA\tROLE\tHOLDER\tCERTS\tKEYS")
	for _, c := range p.Cards {
		var certs []string
		for _, cc := range c.Certs() {
			certs = append(certs, strings.ToUpper(filepath.Base(cc.Name)))
		}
		holder := c.Person
		if holder == "" {
			holder = "(" + c.RoleName + ")"
		}
		keys := "files"
		if c.TokenLabel != "" {
			keys = "token " + c.TokenLabel
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Type, c.UZI, c.URA, c.Role, holder, strings.Join(certs, ","), keys)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tCN\tURA\tKEY")
	for _, n := range []string{testpki.ServerGateway, testpki.ServerLSP, testpki.ServerSBVZ, testpki.ServerOtherOrg} {
		s := p.Servers[n]
		var ura, key string
		for _, mc := range p.Manifest.Certificates {
			if mc.Name == s.Name {
				ura, key = mc.URA, mc.KeyPath
				if mc.KeyURI != "" {
					key = mc.KeyURI
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n, s.Cert.Subject.CommonName, ura, key)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\ntrust bundle: %s  CRLs: %s  manifest: %s\n",
		filepath.Join(dir, p.Manifest.TrustBundle), filepath.Join(dir, "crl"), filepath.Join(dir, "manifest.json"))
	fmt.Fprintln(w, "edge cases: edge/{expired,not-yet-valid,revoked,revoked-sign,revoked-after-signing,wrong-usage-auth,wrong-usage-sign,attacker-*}, crl/zorgverlener-stale.crl")
}
