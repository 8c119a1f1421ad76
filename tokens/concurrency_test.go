package tokens

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

// TestConcurrentSignVerify shares one Signer and one Validator between
// goroutines (run with -race); errors are collected and asserted here.
func TestConcurrentSignVerify(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := testPKI(t)
	s := newTestSigner(t, p.server)
	v := newTestValidator(t)
	const workers, each = 4, 5
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tok, err := s.SignTransaction(sampleTransaction())
				if err != nil {
					errs <- err
					continue
				}
				_, err = v.Verify(context.Background(), tok.Bytes(), TypeTransaction)
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		assert.NoError(t, err)
		n++
	}
	assert.Equal(t, workers*each, n)
}
