package hl7

import (
	"encoding/xml"
	"fmt"
)

// Reader reads a message from the tokens of its element as a strict
// tokeniser hands them over (soap.ParseEnvelopeVisit passes the tokens of
// the soap:Body element), so the envelope is tokenised once for both the
// SOAP structure and the HL7 fields. The tokens must come from a tokeniser
// that already enforced well-formedness, declared prefixes and the size and
// depth limits (internal/xmlsafe.Walk); Reader adds the same element-count
// cap and field rules as Read. A Reader is for one message and one goroutine.
type Reader struct {
	tb  *treeBuilder
	err error
}

// NewReader returns a Reader for an element whose in-scope namespace
// declarations (prefix -> URI, "" for the default) are scope.
func NewReader(scope map[string]string) *Reader {
	if scope == nil {
		scope = map[string]string{}
	}
	return &Reader{tb: newTreeBuilder(scope)}
}

// Token takes the next raw token (xml.Decoder.RawToken form) of the element,
// from its start tag to its end tag. It keeps the first error for Message
// and never returns one, so that it cannot change the caller's parse.
func (r *Reader) Token(tok xml.Token) {
	if r.err == nil {
		r.err = r.tb.token(tok)
	}
}

// Message returns the message read from the tokens, or the first error
// (the same errors as Read).
func (r *Reader) Message() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if len(r.tb.stack) != 1 {
		return nil, fmt.Errorf("%w: incomplete message element", ErrMalformed)
	}
	root, err := r.tb.result()
	if err != nil {
		return nil, err
	}
	return readMessage(root)
}
