package store

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

// ExportFormat identifies the JSON document inside an audit export.
const ExportFormat = "aortagw-audit-export/v1"

// Export is the document a patient receives: their audit records and the
// state of the chain when it was exported. It travels CMS-signed.
type Export struct {
	Format      string        `json:"format"`
	GeneratedAt time.Time     `json:"generated_at"`
	BSN         string        `json:"bsn"`
	From        *time.Time    `json:"from,omitempty"`
	To          *time.Time    `json:"to,omitempty"`
	ChainHead   ExportHead    `json:"chain_head"`
	Records     []AuditRecord `json:"records"`
}

// ExportHead is the chain head at export time; VerifyChain passed up to it.
type ExportHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// ExportOptions selects and signs an export.
type ExportOptions struct {
	BSN      string
	From, To time.Time // optional; inclusive From, exclusive To
	// Signer is the server key (PKCS#11 in production) and Chain its
	// certificate chain, leaf first. The leaf and intermediates go into the
	// CMS SignedData; the root is left out.
	Signer crypto.Signer
	Chain  []*x509.Certificate
}

// ExportAudit verifies the whole chain (an export of a broken log is refused
// with ErrChainBroken), selects the patient's records and returns a DER CMS
// SignedData (RFC 5652) with the JSON Export as attached (encapsulated)
// content, SHA-256, signed with opts.Signer. Attached, so the one file is
// self-contained; `openssl cms -verify -inform DER -CAfile root.pem -in FILE`
// verifies it and prints the JSON.
func ExportAudit(ctx context.Context, s AuditLog, now time.Time, opts ExportOptions) ([]byte, error) {
	if opts.BSN == "" {
		return nil, fmt.Errorf("%w: export needs a bsn", ErrInvalid)
	}
	if opts.Signer == nil || len(opts.Chain) == 0 {
		return nil, fmt.Errorf("%w: export needs a signer and its certificate chain", ErrInvalid)
	}
	rep, err := s.VerifyChain(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := s.AuditRecords(ctx, AuditFilter{BSN: opts.BSN, From: opts.From, To: opts.To, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	doc := Export{Format: ExportFormat, GeneratedAt: micro(now), BSN: opts.BSN,
		ChainHead: ExportHead{Seq: rep.HeadSeq, Hash: rep.HeadHash}, Records: recs}
	if doc.Records == nil {
		doc.Records = []AuditRecord{}
	}
	if !opts.From.IsZero() {
		f := micro(opts.From)
		doc.From = &f
	}
	if !opts.To.IsZero() {
		t := micro(opts.To)
		doc.To = &t
	}
	// Compact, no HTML escaping: Details (json.RawMessage) must come out byte
	// for byte as stored, or the record hashes in the export would not verify.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("store: export encode: %w", err)
	}
	content := buf.Bytes()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("store: export sign: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	var parents []*x509.Certificate
	for _, c := range opts.Chain[1:] {
		if !isSelfSigned(c) {
			parents = append(parents, c)
		}
	}
	if err := sd.AddSignerChain(opts.Chain[0], opts.Signer, parents, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("store: export sign: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("store: export sign: %w", err)
	}
	return der, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject)
}

// VerifyExport checks a DER export: CMS signature, signer chain to one of
// roots at time `at`, exactly one signer, and the JSON format; it returns the
// decoded export and the signer certificate. The input is untrusted.
func VerifyExport(der []byte, roots *x509.CertPool, at time.Time) (*Export, *x509.Certificate, error) {
	if len(der) == 0 || len(der) > 256<<20 {
		return nil, nil, fmt.Errorf("%w: empty or oversized (bytes=%d)", ErrBadExport, len(der))
	}
	if roots == nil {
		return nil, nil, fmt.Errorf("%w: no trust roots", ErrBadExport)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: parse: %w", ErrBadExport, err)
	}
	if len(p7.Signers) != 1 {
		return nil, nil, fmt.Errorf("%w: want exactly one signer (signers=%d)", ErrBadExport, len(p7.Signers))
	}
	if err := p7.VerifyWithChainAtTime(roots, at); err != nil {
		return nil, nil, fmt.Errorf("%w: signature: %w", ErrBadExport, err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, nil, fmt.Errorf("%w: no signer certificate", ErrBadExport)
	}
	var doc Export
	if err := json.Unmarshal(p7.Content, &doc); err != nil {
		return nil, nil, fmt.Errorf("%w: content: %w", ErrBadExport, err)
	}
	if doc.Format != ExportFormat {
		return nil, nil, fmt.Errorf("%w: unknown format (format=%q)", ErrBadExport, doc.Format)
	}
	for i := range doc.Records {
		r := &doc.Records[i]
		if r.BSN != doc.BSN {
			return nil, nil, fmt.Errorf("%w: record for another patient (seq=%d)", ErrBadExport, r.Seq)
		}
		if want := recordHash(r); string(want) != string(r.Hash) {
			return nil, nil, fmt.Errorf("%w: record hash mismatch (seq=%d)", ErrBadExport, r.Seq)
		}
	}
	return &doc, signer, nil
}
