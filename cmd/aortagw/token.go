package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aortagw/aortagw/internal/pemfile"

	"github.com/beevik/etree"
	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/internal/xmlsafe"
	"github.com/aortagw/aortagw/tokens"
)

// newTokenCmd wires `aortagw token sign|verify|inspect` to package tokens.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Sign, verify and inspect AORTA tokens"}
	cmd.AddCommand(newTokenSignCmd(), newTokenVerifyCmd(), newTokenInspectCmd())
	return cmd
}

type tokenSignFlags struct {
	typ, key, cert, out                          string
	modules                                      []string
	embedCert, untilCardExpiry                   bool
	ura, bsn, uitvoerder, nameID                 string
	notBefore, notAfter                          string
	lifetime                                     time.Duration
	context, applicationID                       string
	mandated, audiences                          []string
	interaction, msgRoot, msgExt, ccSystem, code string
}

func newTokenSignCmd() *cobra.Command {
	var f tokenSignFlags
	cmd := &cobra.Command{
		Use:   "sign --type enrolment|mandate|transaction --key URI|PEMFILE --cert FILE --out FILE [claims]",
		Short: "Sign an inschrijf-, mandaat- or transactietoken with a UZI key",
		Long: `Sign a token. The key is a PKCS#11 URI (pkcs11:...; the module must be allowed
with --module) or a PEM private key file (mode 0600). The certificate decides which
token types the key may sign: the authentication key of a Z/N card signs enrolment
and transaction tokens, its non-repudiation key mandate tokens, a UZI server
certificate transaction tokens (conditional query). Times default as documented in
docs/tokens.md; the rules are enforced, never silently bent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTokenSign(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.typ, "type", "", "token type: enrolment|inschrijf, mandate|mandaat, transaction|transactie")
	fl.StringVar(&f.key, "key", "", "PKCS#11 URI or PEM private key file")
	fl.StringVar(&f.cert, "cert", "", "PEM certificate file (leaf first, chain optional); defaults to the token's certificate for a PKCS#11 key")
	fl.StringVar(&f.out, "out", "", "output file (\"-\" for stdout)")
	fl.StringSliceVar(&f.modules, "module", nil, "allowed PKCS#11 module path(s)")
	fl.BoolVar(&f.embedCert, "embed-cert", false, "also embed the certificate as ds:X509Certificate")
	fl.StringVar(&f.ura, "ura", "", "organisation URA (8 digits)")
	fl.StringVar(&f.bsn, "bsn", "", "patient BSN")
	fl.StringVar(&f.uitvoerder, "uitvoerder", "", "enrolment: UZI number of the checker (default: the signer)")
	fl.StringVar(&f.nameID, "name-id", "", "transaction: NameID (default: signer UZI:role, empty for a server certificate)")
	fl.StringVar(&f.notBefore, "not-before", "", "NotBefore (RFC 3339); default per type")
	fl.StringVar(&f.notAfter, "not-on-or-after", "", "NotOnOrAfter (RFC 3339); required for mandates unless --until-card-expiry")
	fl.BoolVar(&f.untilCardExpiry, "until-card-expiry", false, "mandate: valid until the signing certificate expires (clamps a later --not-on-or-after)")
	fl.DurationVar(&f.lifetime, "lifetime", 0, "transaction: lifetime after IssueInstant (default 5m, at most 89m)")
	fl.StringVar(&f.context, "context", "", "autorisatieregel/context URI")
	fl.StringVar(&f.applicationID, "application-id", "", "applicationID URN (urn:IIroot:2.16.840.1.113883.2.4.6.6:IIext:<id>)")
	fl.StringSliceVar(&f.mandated, "mandated", nil, "mandate: gemandateerde (UZI, UZI:role or applicationID URN); repeatable")
	fl.StringSliceVar(&f.audiences, "audience", nil, "audience URN(s); default the ZIM")
	fl.StringVar(&f.interaction, "interaction", "", "transaction: HL7 interactionId")
	fl.StringVar(&f.msgRoot, "message-id-root", "", "transaction: HL7 message id root")
	fl.StringVar(&f.msgExt, "message-id-ext", "", "transaction: HL7 message id extension")
	fl.StringVar(&f.ccSystem, "context-code-system", "", "transaction: contextCodeSystem")
	fl.StringVar(&f.code, "context-code", "", "transaction: contextCode")
	for _, n := range []string{"type", "key", "out"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func parseOptTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, s)
}

func runTokenSign(ctx context.Context, f tokenSignFlags) error {
	typ, err := tokens.ParseType(f.typ)
	if err != nil {
		return err
	}
	nb, err := parseOptTime(f.notBefore)
	if err != nil {
		return fmt.Errorf("--not-before: %w", err)
	}
	na, err := parseOptTime(f.notAfter)
	if err != nil {
		return fmt.Errorf("--not-on-or-after: %w", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	key, chain, closeKey, err := loadSigner(ctx, f.key, f.cert, f.modules, nil)
	if err != nil {
		return err
	}
	defer closeKey()
	opts := []tokens.Option{tokens.WithEmbeddedCertificate(f.embedCert)}
	if f.lifetime != 0 {
		opts = append(opts, tokens.WithTransactionLifetime(f.lifetime))
	}
	s, err := tokens.NewSigner(key, chain, opts...)
	if err != nil {
		return err
	}
	var signed *tokens.Signed
	switch typ {
	case tokens.TypeEnrolment:
		signed, err = s.SignEnrolment(tokens.Enrolment{NotBefore: nb, NotOnOrAfter: na, URA: f.ura, BSN: f.bsn,
			Uitvoerder: f.uitvoerder, Audiences: f.audiences})
	case tokens.TypeMandate:
		signed, err = s.SignMandate(tokens.Mandate{NotBefore: nb, NotOnOrAfter: na, URA: f.ura, Mandated: f.mandated,
			ApplicationID: f.applicationID, Context: f.context, Audiences: f.audiences, UntilCardExpiry: f.untilCardExpiry})
	case tokens.TypeTransaction:
		signed, err = s.SignTransaction(tokens.Transaction{NotBefore: nb, NotOnOrAfter: na, URA: f.ura, NameID: f.nameID,
			BSN: f.bsn, InteractionID: f.interaction, MessageIDRoot: f.msgRoot, MessageIDExt: f.msgExt,
			ApplicationID: f.applicationID, Context: f.context, ContextCodeSystem: f.ccSystem, ContextCode: f.code,
			Audiences: f.audiences})
	}
	if err != nil {
		return err
	}
	if f.out == "-" {
		_, err = os.Stdout.Write(signed.Bytes())
		return err
	}
	return os.WriteFile(f.out, signed.Bytes(), 0o644)
}

type tokenVerifyFlags struct {
	typ, trust, intermediates, certDir, now, audience string
	crls                                              []string
	bsn, interaction, ura, replayDB                   string
	skew                                              time.Duration
	asJSON, productionOnly                            bool
}

func newTokenVerifyCmd() *cobra.Command {
	var f tokenVerifyFlags
	cmd := &cobra.Command{
		Use:   "verify FILE --trust PEM --crl PEM... --type TYPE",
		Short: "Verify a token (bare assertion or SOAP envelope); exit 0 accepted, 1 rejected",
		Long: `Verify one token with the full validation pipeline of docs/tokens.md. FILE is a
bare saml:Assertion or a SOAP 1.1 envelope; for an envelope the WS-Security header
rules apply and the token of --type is verified. --trust holds the root(s); CA
certificates in it that are not self-signed are used as intermediates. Every CRL
must be signed by a configured CA and be fresh. Exit status 0: accepted; 1:
rejected, with one line on stderr saying why.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenVerify(cmd.Context(), cmd.OutOrStdout(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.typ, "type", "", "token type: enrolment|inschrijf, mandate|mandaat, transaction|transactie")
	fl.StringVar(&f.trust, "trust", "", "PEM file with the trusted root(s) (and optionally CA certificates)")
	fl.StringVar(&f.intermediates, "intermediates", "", "PEM file with CA certificates")
	fl.StringSliceVar(&f.crls, "crl", nil, "CRL file (PEM or DER); repeatable")
	fl.StringVar(&f.certDir, "certdir", "", "directory of PEM certificates to resolve IssuerSerial-only KeyInfo")
	fl.StringVar(&f.now, "now", "", "verification time (RFC 3339); default now")
	fl.StringVar(&f.audience, "audience", "", "required audience (default the ZIM)")
	fl.DurationVar(&f.skew, "skew", 0, "allowed clock skew (default 2m)")
	fl.StringVar(&f.bsn, "bsn", "", "the token must carry this BSN (\"none\": no BSN)")
	fl.StringVar(&f.interaction, "interaction", "", "transaction: the interactionId it must carry")
	fl.StringVar(&f.ura, "ura", "", "the URA the token must carry")
	fl.StringVar(&f.replayDB, "replay-db", "", "file that keeps used transaction token IDs across runs")
	fl.BoolVar(&f.asJSON, "json", false, "print the verified claims as JSON")
	fl.BoolVar(&f.productionOnly, "production-only", false, "refuse certificates of UZI test CAs")
	_ = cmd.MarkFlagRequired("type")
	_ = cmd.MarkFlagRequired("trust")
	return cmd
}

// rejected wraps a verification failure as exit status 1 with one line.
func rejected(err error) error {
	return &exitError{code: 1, err: fmt.Errorf("rejected (code=%s): %s", tokens.Code(err), oneLine(err.Error()))}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func runTokenVerify(ctx context.Context, w io.Writer, path string, f tokenVerifyFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	typ, err := tokens.ParseType(f.typ)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	trust, err := pemfile.ReadCertificates(f.trust)
	if err != nil {
		return err
	}
	var roots, inter []*x509.Certificate
	for _, c := range trust {
		if string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			inter = append(inter, c)
		}
	}
	if f.intermediates != "" {
		more, err := pemfile.ReadCertificates(f.intermediates)
		if err != nil {
			return err
		}
		inter = append(inter, more...)
	}
	crls, err := pemfile.ReadCRLs(f.crls...)
	if err != nil {
		return err
	}
	now := time.Now
	if f.now != "" {
		t, err := time.Parse(time.RFC3339, f.now)
		if err != nil {
			return fmt.Errorf("--now: %w", err)
		}
		now = func() time.Time { return t }
	}
	cfg := tokens.ValidatorConfig{Roots: roots, Intermediates: inter, CRLs: crls, Now: now, Skew: f.skew,
		Audience: f.audience, ProductionOnly: f.productionOnly}
	if f.certDir != "" {
		d, err := tokens.LoadFileDirectory(f.certDir)
		if err != nil {
			return err
		}
		cfg.Directory = d
	}
	if f.replayDB != "" {
		cfg.Replay = tokens.NewFileReplayCache(f.replayDB, now)
	}
	v, err := tokens.NewValidator(cfg)
	if err != nil {
		return err
	}
	var got *tokens.Verified
	if isEnvelope(raw) {
		got, err = v.VerifyInEnvelope(ctx, raw, typ)
	} else {
		got, err = v.Verify(ctx, raw, typ)
	}
	if err != nil {
		return rejected(err)
	}
	c := claimsOf(got)
	if err := checkExpectations(c, f); err != nil {
		return rejected(err)
	}
	if f.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	_, err = fmt.Fprintf(w, "accepted: %s token %s issued by %s, signed by %s (%s), valid until %s\n",
		c.Type, c.ID, c.Issuer, c.SignerUZI+":"+c.SignerRole, c.SignerURA, c.NotOnOrAfter)
	return err
}

// isEnvelope tells a SOAP envelope from a bare assertion by the root element's
// local name only; the verifier checks the namespace.
func isEnvelope(raw []byte) bool {
	doc, err := xmlsafe.Parse(raw, xmlsafe.MessageLimits)
	return err == nil && doc.Root().Tag == "Envelope"
}

type tokenClaims struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	Issuer        string `json:"issuer"`
	Subject       string `json:"subject"`
	PatientBSN    string `json:"patient_bsn"`
	InteractionID string `json:"interaction_id"`
	SignerUZI     string `json:"signer_uzi"`
	SignerRole    string `json:"signer_role"`
	SignerURA     string `json:"signer_ura"`
	NotBefore     string `json:"not_before"`
	NotOnOrAfter  string `json:"not_on_or_after"`
	ura           string
}

func claimsOf(v *tokens.Verified) tokenClaims {
	c := tokenClaims{Type: v.Type.String(), ID: v.ID, Issuer: v.Issuer, SignerUZI: v.Signer.UZI,
		SignerRole: v.Signer.Role, SignerURA: v.Signer.URA,
		NotBefore: v.NotBefore().UTC().Format(tokens.TimeFormat), NotOnOrAfter: v.NotOnOrAfter().UTC().Format(tokens.TimeFormat)}
	switch {
	case v.Enrolment != nil:
		c.Subject, c.PatientBSN, c.ura = v.Enrolment.BSN, v.Enrolment.BSN, v.Enrolment.URA
	case v.Mandate != nil:
		c.Subject, c.ura = tokens.URAPrefix+v.Mandate.URA, v.Mandate.URA
	case v.Transaction != nil:
		c.Subject, c.PatientBSN, c.InteractionID, c.ura = v.Transaction.NameID, v.Transaction.BSN, v.Transaction.InteractionID, v.Transaction.URA
	}
	return c
}

func checkExpectations(c tokenClaims, f tokenVerifyFlags) error {
	switch {
	case f.bsn == "none" && c.PatientBSN != "":
		return fmt.Errorf("%w: token has a bsn, none expected", tokens.ErrBindingBSN)
	case f.bsn != "" && f.bsn != "none" && c.PatientBSN != f.bsn:
		return fmt.Errorf("%w: (token=%q expected=%q)", tokens.ErrBindingBSN, c.PatientBSN, f.bsn)
	case f.interaction != "" && c.InteractionID != f.interaction:
		return fmt.Errorf("%w: (token=%q expected=%q)", tokens.ErrBindingInteraction, c.InteractionID, f.interaction)
	case f.ura != "" && c.ura != f.ura:
		return fmt.Errorf("%w: (token=%q expected=%q)", tokens.ErrBindingURA, c.ura, f.ura)
	}
	return nil
}

func newTokenInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a readable dump of the token(s) in FILE, UNVERIFIED",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return inspectTokens(cmd.OutOrStdout(), raw)
		},
	}
}

func inspectTokens(w io.Writer, raw []byte) error {
	doc, err := xmlsafe.Parse(raw, xmlsafe.MessageLimits)
	if err != nil {
		return err
	}
	var as []*etree.Element
	var find func(el *etree.Element)
	find = func(el *etree.Element) {
		if el.Tag == "Assertion" && el.NamespaceURI() == tokens.NSSAML {
			as = append(as, el)
			return
		}
		for _, c := range el.ChildElements() {
			find(c)
		}
	}
	find(doc.Root())
	if len(as) == 0 {
		return errors.New("no saml:Assertion found")
	}
	fmt.Fprintln(w, "UNVERIFIED — nothing below has been checked; use `aortagw token verify`.")
	for i, a := range as {
		fmt.Fprintf(w, "\n[%d] saml:Assertion ID=%s IssueInstant=%s Version=%s\n", i+1,
			a.SelectAttrValue("ID", "?"), a.SelectAttrValue("IssueInstant", "?"), a.SelectAttrValue("Version", "?"))
		dumpElement(w, a, 1)
	}
	return nil
}

// dumpElement prints the tree compactly, long base64 values shortened.
func dumpElement(w io.Writer, el *etree.Element, depth int) {
	for _, c := range el.ChildElements() {
		ind := strings.Repeat("  ", depth)
		var attrs []string
		for _, a := range c.Attr {
			if a.Space == "xmlns" || a.Key == "xmlns" {
				continue
			}
			attrs = append(attrs, a.FullKey()+"="+a.Value)
		}
		text := strings.TrimSpace(c.Text())
		if len(text) > 64 {
			text = text[:28] + "…" + text[len(text)-28:] + fmt.Sprintf(" (%d chars)", len(text))
		}
		line := ind + c.Tag
		if len(attrs) > 0 {
			line += " [" + strings.Join(attrs, " ") + "]"
		}
		if text != "" {
			line += ": " + text
		}
		fmt.Fprintln(w, line)
		dumpElement(w, c, depth+1)
	}
}
