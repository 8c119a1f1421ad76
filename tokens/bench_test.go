package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/beevik/etree"

	"github.com/aortagw/aortagw/internal/xmlsafe"
	"time"
)

// BenchmarkRawRSA2048Sign is the reference: one PKCS#1 v1.5 SHA-256 signature.
func BenchmarkRawRSA2048Sign(b *testing.B) {
	k := testPKI(b).zAut.key
	d := sha256.Sum256([]byte("x"))
	for b.Loop() {
		if _, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	p := testPKI(b)
	b.Run("enrolment", func(b *testing.B) {
		s := newTestSigner(b, p.zAut)
		for b.Loop() {
			if _, err := s.SignEnrolment(sampleEnrolment()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mandate", func(b *testing.B) {
		s := newTestSigner(b, p.zHnd)
		for b.Loop() {
			if _, err := s.SignMandate(sampleMandate()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transaction", func(b *testing.B) {
		s := newTestSigner(b, p.server)
		for b.Loop() {
			if _, err := s.SignTransaction(sampleTransaction()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	p := testPKI(b)
	for _, native := range []bool{false, true} {
		name := "dual"
		if native {
			name = "native"
		}
		mk := func() *Validator {
			// The verified-token cache is off here: this measures full verification.
			return newTestValidator(b, func(c *ValidatorConfig) { c.NativeOnly = native; c.Replay = noReplay{}; c.VerifiedCacheSize = -1 })
		}
		enr, _ := newTestSigner(b, p.zAut).SignEnrolment(sampleEnrolment())
		mdt, _ := newTestSigner(b, p.zHnd).SignMandate(sampleMandate())
		trx, _ := newTestSigner(b, p.server).SignTransaction(sampleTransaction())
		for _, c := range []struct {
			n string
			s *Signed
			t Type
		}{{"enrolment", enr, TypeEnrolment}, {"mandate", mdt, TypeMandate}, {"transaction", trx, TypeTransaction}} {
			b.Run(name+"/"+c.n, func(b *testing.B) {
				v := mk()
				b.SetBytes(int64(len(c.s.Bytes())))
				for b.Loop() {
					if _, err := v.Verify(context.Background(), c.s.Bytes(), c.t); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyCached measures a verified-cache hit for a reused
// enrolment or mandate token (hash, time checks, revocation re-check).
func BenchmarkVerifyCached(b *testing.B) {
	p := testPKI(b)
	mdt, _ := newTestSigner(b, p.zHnd).SignMandate(sampleMandate())
	v := newTestValidator(b)
	if _, err := v.Verify(context.Background(), mdt.Bytes(), TypeMandate); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(mdt.Bytes())))
	for b.Loop() {
		if _, err := v.Verify(context.Background(), mdt.Bytes(), TypeMandate); err != nil {
			b.Fatal(err)
		}
	}
}

type noReplay struct{}

func (noReplay) Use(context.Context, string, string, time.Time) error { return nil }

func BenchmarkStages(b *testing.B) {
	p := testPKI(b)
	trx, _ := newTestSigner(b, p.server).SignTransaction(sampleTransaction())
	raw := trx.Bytes()
	b.Run("xmlsafe.Check", func(b *testing.B) {
		for b.Loop() {
			_ = xmlsafe.Check(raw, xmlsafe.TokenLimits)
		}
	})
	b.Run("xmlsafe.Parse", func(b *testing.B) {
		for b.Loop() {
			_, _ = xmlsafe.Parse(raw, xmlsafe.TokenLimits)
		}
	})
	b.Run("etree", func(b *testing.B) {
		for b.Loop() {
			d := etree.NewDocument()
			_ = d.ReadFromBytes(raw)
		}
	})
	doc, _ := xmlsafe.Parse(raw, xmlsafe.TokenLimits)
	b.Run("c14n", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			excC14N(&buf, doc.Root(), nil)
		}
	})
}
