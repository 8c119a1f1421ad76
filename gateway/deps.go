package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/aortagw/aortagw/internal/soap"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/tokens"
)

// TransactionSigner mints transaction tokens with the server key
// (*tokens.Signer), signing under ctx (deadline, and the actor the HSM
// audit event names). It must be safe for concurrent use.
type TransactionSigner interface {
	SignTransactionContext(ctx context.Context, t tokens.Transaction) (*tokens.Signed, error)
}

// Forwarder sends one envelope, spliced by (*soap.Envelope).WithSecurity,
// to the LSP (*lsp.Client). It must never retry a message on its own (a
// transaction token is used once).
type Forwarder interface {
	SendSecured(ctx context.Context, envelope *soap.Secured, soapAction string) (*lsp.Response, error)
}

// TokenVerifier validates enrolment and mandate tokens before they are
// registered (*tokens.Validator, configured with the UZI roots and CRLs).
type TokenVerifier interface {
	Verify(ctx context.Context, raw []byte, want tokens.Type) (*tokens.Verified, error)
}

// Deps are the gateway's collaborators. All are required except Callback
// (default: a client with a 30 s timeout that follows no redirects).
type Deps struct {
	Store    store.Store
	Signer   TransactionSigner
	LSP      Forwarder
	Verifier TokenVerifier
	Callback *http.Client

	checks []Check
}

func (d *Deps) check() error {
	var errs []error
	if d.Store == nil {
		errs = append(errs, errors.New("store"))
	}
	if d.Signer == nil {
		errs = append(errs, errors.New("signer"))
	}
	if d.LSP == nil {
		errs = append(errs, errors.New("lsp"))
	}
	if d.Verifier == nil {
		errs = append(errs, errors.New("verifier"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: missing dependencies: %v", ErrConfig, err)
	}
	if d.Callback == nil {
		d.Callback = &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return nil
}

func newUUID() string { return uuid.NewString() }
