package sbvz

import (
	"context"
	"testing"
)

// BenchmarkParseVerifyResponse measures the strict parser on a full answer.
func BenchmarkParseVerifyResponse(b *testing.B) {
	body := []byte(fullAnswer)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseVerifyResponse(body, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupMutualTLS measures whole lookups (build, mTLS round trip on
// kept-alive connections, simulator, strict parse, checks) in parallel.
func BenchmarkLookupMutualTLS(b *testing.B) {
	pki := sharedPKI(b)
	e := benchEnv(b, pki)
	q := path2(Persona("found"))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Lookup(ctx, q); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
