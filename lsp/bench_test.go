package lsp

import (
	"context"
	"testing"

	"github.com/aortagw/aortagw/testpki"
)

// BenchmarkRoundTrip measures one query from client to simulator and back
// over mutual TLS (kept-alive connections): envelope parse and checks on
// both sides, three token verifications with chain and CRL checks, replay,
// the answer and its parse. Tokens are minted before the timer starts.
func BenchmarkRoundTrip(b *testing.B) {
	w := newWorld(b)
	c := w.client(b, testpki.ServerGateway, nil)
	envs := make([][]byte, b.N)
	for i := range envs {
		envs[i] = w.mint(b, msg{}).envelope
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Send(ctx, envs[i], ""); err != nil {
			b.Fatal(err)
		}
	}
}
