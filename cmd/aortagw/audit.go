package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aortagw/aortagw/internal/pemfile"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/gateway/store"
)

// storeDBFlag registers --db, defaulting to $AORTAGW_STORE_DSN.
func storeDBFlag(cmd *cobra.Command, dsn *string) {
	cmd.Flags().StringVar(dsn, "db", os.Getenv("AORTAGW_STORE_DSN"),
		"store DSN: sqlite:PATH or postgres://... (default $AORTAGW_STORE_DSN)")
}

// storeOpenCLI opens the store for a one-shot command (migrations included).
func storeOpenCLI(ctx context.Context, dsn string) (store.Store, error) {
	if dsn == "" {
		return nil, errors.New("--db is required (or set AORTAGW_STORE_DSN)")
	}
	return store.Open(ctx, dsn, store.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr,
		&slog.HandlerOptions{Level: slog.LevelWarn}))})
}

// newAuditCmd is `aortagw audit verify|export|verify-export`.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the audit trail",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd(), newAuditVerifyExportCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	var dsn, expectHead string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain of the audit log; exit 1 on any change, deletion, insertion or reordering",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := s.VerifyChain(cmd.Context())
			out := cmd.OutOrStdout()
			if err != nil && !errors.Is(err, store.ErrChainBroken) {
				return err
			}
			_, _ = fmt.Fprintf(out, "records: %d\nhead:    seq %d hash %s\n", rep.Records, rep.HeadSeq, rep.HeadHash)
			for _, p := range rep.Problems {
				_, _ = fmt.Fprintf(out, "BROKEN:  %s\n", p)
			}
			if !rep.OK {
				return &exitError{code: 1, err: fmt.Errorf("audit chain broken (%d problem(s))", len(rep.Problems))}
			}
			if expectHead != "" {
				if seq, hash, ok := strings.Cut(expectHead, ":"); ok {
					if err := auditCheckNotedHead(cmd.Context(), s, seq, hash); err != nil {
						_, _ = fmt.Fprintf(out, "BROKEN:  %v\n", err)
						return &exitError{code: 1, err: err}
					}
				} else {
					return fmt.Errorf("--expect-head wants SEQ:HASH (as printed by an earlier verify)")
				}
			}
			_, _ = fmt.Fprintln(out, "chain:   ok")
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	cmd.Flags().StringVar(&expectHead, "expect-head", "",
		"SEQ:HASH noted from an earlier run; the record at SEQ must still carry HASH (detects a rewritten log)")
	return cmd
}

// auditCheckNotedHead checks that the record at seq still has the hash noted earlier.
func auditCheckNotedHead(ctx context.Context, s store.Store, seqText, hash string) error {
	var seq int64
	if _, err := fmt.Sscan(seqText, &seq); err != nil || seq < 1 {
		return fmt.Errorf("--expect-head: bad sequence number %q", seqText)
	}
	recs, err := s.AuditRecords(ctx, store.AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		return err
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		return fmt.Errorf("record %d noted earlier is gone (log truncated or rewritten)", seq)
	}
	if got := fmt.Sprintf("%x", recs[0].Hash); !strings.EqualFold(got, hash) {
		return fmt.Errorf("record %d hash is %s, noted %s (log rewritten)", seq, got, hash)
	}
	return nil
}

func newAuditExportCmd() *cobra.Command {
	var dsn, bsn, from, to, keyRef, certFile, out string
	var modules []string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write a patient's audit records as CMS-signed JSON (attached SignedData, DER)",
		Long: `Write the audit records of one patient (optionally between --from and --to) as a
JSON document inside a CMS SignedData (DER, content attached), signed by the
server key. The whole chain is verified first; a broken chain is not exported.
Check a file with:
  openssl cms -verify -binary -inform DER -in FILE -CAfile ROOT.pem -purpose any
or: aortagw audit verify-export --in FILE --roots ROOT.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if bsn == "" || keyRef == "" || out == "" {
				return errors.New("--bsn, --key and --out are required")
			}
			var fromT, toT time.Time
			var err error
			if fromT, err = auditParseWhen(from); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if toT, err = auditParseWhen(to); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			signer, chain, closeKey, err := loadSigner(ctx, keyRef, certFile, modules, nil)
			if err != nil {
				return err
			}
			defer closeKey()
			s, err := storeOpenCLI(ctx, dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			der, err := store.ExportAudit(ctx, s, time.Now(), store.ExportOptions{BSN: bsn, From: fromT, To: toT,
				Signer: signer, Chain: chain})
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, der, 0o600); err != nil {
				return fmt.Errorf("write export: %w", err)
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", out, len(der))
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	f := cmd.Flags()
	f.StringVar(&bsn, "bsn", "", "patient BSN")
	f.StringVar(&from, "from", "", "first moment included (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "first moment excluded (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&keyRef, "key", "", "server key: a pkcs11: URI (pin-source, not pin-value) or a PEM private key file (mode 0600)")
	f.StringVar(&certFile, "cert", "", "PEM certificate chain, leaf first (default: the certificates on the token)")
	f.StringArrayVar(&modules, "pkcs11-module", nil, "allowed PKCS#11 module path (repeatable; needed for a pkcs11: key)")
	f.StringVar(&out, "out", "", "output file (DER)")
	return cmd
}

func newAuditVerifyExportCmd() *cobra.Command {
	var in, rootsFile string
	cmd := &cobra.Command{
		Use:   "verify-export",
		Short: "Verify a signed audit export and print its JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || rootsFile == "" {
				return errors.New("--in and --roots are required")
			}
			der, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			roots, err := auditReadCertPool(rootsFile)
			if err != nil {
				return err
			}
			doc, signer, err := store.VerifyExport(der, roots, time.Now())
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			w := cmd.OutOrStdout()
			_, _ = fmt.Fprintf(w, "signed by: %s\npatient:   %s\nrecords:   %d\nchain head at export: seq %d hash %s\n",
				signer.Subject, doc.BSN, len(doc.Records), doc.ChainHead.Seq, doc.ChainHead.Hash)
			for _, r := range doc.Records {
				_, _ = fmt.Fprintf(w, "%6d %s %-18s %-22s giver=%s actor=%s msg=%s outcome=%s\n", r.Seq,
					r.Time.Format(time.RFC3339), r.Kind, r.Interaction, r.Giver, r.Actor, r.MessageID, r.Outcome)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "export file (DER)")
	cmd.Flags().StringVar(&rootsFile, "roots", "", "PEM file with the trusted root certificate(s)")
	return cmd
}

func auditParseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

func auditReadCertPool(path string) (*x509.CertPool, error) {
	certs, err := pemfile.ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
