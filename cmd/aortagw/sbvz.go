package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aortagw/aortagw/internal/pemfile"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/aortagw/aortagw/sbvz"
)

// sbvzClientFlags are the connection flags every `aortagw sbvz` command shares.
type sbvzClientFlags struct {
	endpoint   string
	key        string
	cert       string
	ca         string
	serverName string
	modules    []string
	timeout    time.Duration
}

func (f *sbvzClientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.endpoint, "endpoint", "acceptance", `SBV-Z: "acceptance", "production" or https://host[:port] (e.g. the simulator)`)
	fl.StringVar(&f.key, "key", "", "UZI server certificate key: PKCS#11 URI (pkcs11:...;pin-source=file:...) or PEM file (mode 600)")
	fl.StringVar(&f.cert, "cert", "", "PEM certificate chain of the key, leaf first (default: from the token)")
	fl.StringVar(&f.ca, "ca", "", "PEM file with the pinned CA certificate(s) of SBV-Z's TLS certificate")
	fl.StringVar(&f.serverName, "server-name", "", "TLS server name to expect (default: endpoint host)")
	fl.StringSliceVar(&f.modules, "pkcs11-module", nil, "allowed PKCS#11 module path(s) for --key URIs")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout per SBV-Z request")
}

// client opens the key and builds an sbvz.Client; the returned func closes both.
func (f *sbvzClientFlags) client(ctx context.Context, log *slog.Logger) (*sbvz.Client, func(), error) {
	if f.key == "" || f.ca == "" {
		return nil, nil, errors.New("sbvz: --key and --ca are required")
	}
	ep, err := sbvz.EndpointsFor(f.endpoint)
	if err != nil {
		return nil, nil, err
	}
	cas, err := pemfile.ReadCertificates(f.ca)
	if err != nil {
		return nil, nil, err
	}
	key, chain, closeKey, err := loadSigner(ctx, f.key, f.cert, f.modules, log)
	if err != nil {
		return nil, nil, err
	}
	if f.cert == "" && len(chain) == 1 {
		log.Warn("sbvz: the token holds only the leaf certificate; TLS clients only present a chain that reaches a CA the server names, so pass --cert with the full chain (leaf first)")
	}
	c, err := sbvz.NewClient(sbvz.ClientConfig{Endpoints: ep, Key: key, Chain: chain, PinnedCAs: cas,
		ServerName: f.serverName, Timeout: f.timeout, Logger: log})
	if err != nil {
		closeKey()
		return nil, nil, err
	}
	return c, func() { _ = c.Close(); closeKey() }, nil
}

func newSBVZCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sbvz",
		Short: "SBV-Z client tasks: look up or verify a BSN, person data, ID-document check, initial fill",
	}
	root.AddCommand(newSBVZFillCmd(), newSBVZQueryCmd("lookup"), newSBVZQueryCmd("verify"), newSBVZPersonCmd(), newSBVZDocumentCmd())
	return root
}

func sbvzLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newSBVZFillCmd() *cobra.Command {
	var cf sbvzClientFlags
	var in, out, state string
	var rateFlag string
	var workers int
	var afspraak bool
	cmd := &cobra.Command{
		Use:   "fill --in patients.csv --out results.csv",
		Short: "Initial fill: ask SBV-Z for every patient in a CSV, rate limited and resumable",
		Long: `Initial fill: one SBV-Z question per row (verify when the row has a BSN, lookup otherwise).
Columns (header row; comma or semicolon): ` + strings.Join(sbvz.FillColumns, ", ") + `; only id is required.
Every finished row is fsync'ed to the state file (default <out>.state) before the next
question: after a crash or kill, run the same command again and finished rows are not
asked again. The output CSV is written from the state file at the end of each run.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ratePerSec, err := parseRate(rateFlag)
			if err != nil {
				return err
			}
			log := sbvzLogger()
			c, closeAll, err := cf.client(ctx, log)
			if err != nil {
				return err
			}
			defer closeAll()
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			s, err := sbvz.Fill(ctx, sbvz.FillConfig{InPath: in, OutPath: out, StatePath: state, Rate: ratePerSec, Workers: workers,
				Appointment: afspraak, Progress: os.Stderr, Terminal: tty, Logger: log}, c)
			if err != nil && s != nil && errors.Is(err, sbvz.ErrUnfinished) {
				return &exitError{code: 3, err: err}
			}
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&in, "in", "", "input CSV")
	cmd.Flags().StringVar(&out, "out", "", "output CSV")
	cmd.Flags().StringVar(&state, "state", "", "journal file (default <out>.state)")
	cmd.Flags().StringVar(&rateFlag, "rate", "5/s", "maximum question rate: N, N/s, N/m or N/h")
	cmd.Flags().IntVar(&workers, "workers", 1, "questions in flight at once (the rate limit holds across them)")
	cmd.Flags().BoolVar(&afspraak, "afspraak", false, "make and remove the initial-fill afspraak ([P] operation; the simulator supports it)")
	_ = cmd.MarkFlagRequired("in")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// parseRate reads "N", "N/s", "N/m" or "N/h" as questions per second.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("sbvz: --rate must be a positive number, optionally /s, /m or /h (value=%q)", s)
	}
	switch unit {
	case "", "s":
		return n, nil
	case "m":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("sbvz: --rate unit must be s, m or h (value=%q)", s)
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sbvzResultExit turns an F answer into exit code 1 (after printing it).
func sbvzResultExit(cmd *cobra.Command, r *sbvz.Result) error {
	if err := printJSON(cmd, r); err != nil {
		return err
	}
	if r.Outcome == sbvz.OutcomeFailed {
		return &exitError{code: 1, err: fmt.Errorf("sbvz: resultaat F (codes=%s)", strings.Join(r.Codes(), ","))}
	}
	return nil
}

func newSBVZQueryCmd(mode string) *cobra.Command {
	var cf sbvzClientFlags
	var q sbvz.Query
	short := "Look up the BSN of a person (path 1: birth date, sex, postcode, house number; path 2: birth date, sex, surname)"
	if mode == "verify" {
		short = "Verify a BSN with person data (same search paths plus --bsn)"
	}
	cmd := &cobra.Command{
		Use:   mode,
		Short: short,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, closeAll, err := cf.client(cmd.Context(), sbvzLogger())
			if err != nil {
				return err
			}
			defer closeAll()
			var r *sbvz.Result
			if mode == "verify" {
				r, err = c.Verify(cmd.Context(), q)
			} else {
				r, err = c.Lookup(cmd.Context(), q)
			}
			if err != nil {
				return err
			}
			return sbvzResultExit(cmd, r)
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	if mode == "verify" {
		fl.StringVar(&q.Person.BSN, "bsn", "", "BSN to verify")
	}
	fl.StringVar(&q.Person.BirthDate, "geboortedatum", "", "birth date yyyyMMdd")
	fl.StringVar(&q.Person.Sex, "geslacht", "", "M, V or O")
	fl.StringVar(&q.Person.Surname, "geslachtsnaam", "", "surname without prefix (path 2)")
	fl.StringVar(&q.Person.SurnamePrefix, "voorvoegsel", "", "surname prefix, e.g. van der")
	fl.StringVar(&q.Person.GivenNames, "voornamen", "", "given names")
	fl.StringVar(&q.Address.PostalCode, "postcode", "", "postcode 1234AB (path 1)")
	fl.StringVar(&q.Address.HouseNumber, "huisnummer", "", "house number (path 1)")
	fl.StringVar(&q.Address.HouseLetter, "huisletter", "", "house letter")
	fl.StringVar(&q.Address.HouseNumberSuffix, "toevoeging", "", "house number suffix")
	return cmd
}

func newSBVZPersonCmd() *cobra.Command {
	var cf sbvzClientFlags
	var bsn string
	cmd := &cobra.Command{
		Use:   "person --bsn BSN",
		Short: "Ask the registered person data of a BSN (OpvragenPersoonsgegevens)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, closeAll, err := cf.client(cmd.Context(), sbvzLogger())
			if err != nil {
				return err
			}
			defer closeAll()
			r, err := c.PersonData(cmd.Context(), bsn)
			if err != nil {
				return err
			}
			return sbvzResultExit(cmd, r)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&bsn, "bsn", "", "BSN")
	return cmd
}

func newSBVZDocumentCmd() *cobra.Command {
	var cf sbvzClientFlags
	var q sbvz.DocumentQuery
	var kind string
	cmd := &cobra.Command{
		Use:   "document --nummer NR --soort P|I|R|V",
		Short: "Check an identity document (WID; [P] message shape, see docs/sbvz.md)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			q.Kind = sbvz.DocumentKind(kind)
			c, closeAll, err := cf.client(cmd.Context(), sbvzLogger())
			if err != nil {
				return err
			}
			defer closeAll()
			d, err := c.CheckDocument(cmd.Context(), q)
			if err != nil {
				return err
			}
			if err := printJSON(cmd, d); err != nil {
				return err
			}
			if !d.Usable() {
				return &exitError{code: 1, err: fmt.Errorf("sbvz: document not usable (status=%s)", d.Status)}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&q.Number, "nummer", "", "document number")
	cmd.Flags().StringVar(&kind, "soort", "P", "P paspoort, I identiteitskaart, R rijbewijs, V verblijfsdocument")
	return cmd
}
