package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/lsp"
)

func TestLSPFaultPassedOnByteForByte(t *testing.T) {
	// A fault as an LSP might write it: its own prefixes, an XML declaration,
	// whitespace and a detail that a re-rendering would normalise away.
	raw := []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  <SOAP-ENV:Body>\n    <SOAP-ENV:Fault><faultcode xmlns:zim=\"urn:zim\">zim:Security</faultcode><faultstring>token refused</faultstring><detail><zim:reason xmlns:zim=\"urn:zim\">  spaced  </zim:reason></detail></SOAP-ENV:Fault>\n  </SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   []byte
		wantNil    bool
	}{
		{name: "fault bytes returned unchanged with the lsp status",
			err:        &lsp.FaultError{Code: "zim:Security", String: "token refused", HTTPStatus: http.StatusInternalServerError, Envelope: raw},
			wantStatus: http.StatusInternalServerError, wantBody: raw},
		{name: "wrapped fault error too",
			err:        fmt.Errorf("send: %w", &lsp.FaultError{Code: "zim:X", HTTPStatus: http.StatusBadRequest, Envelope: raw}),
			wantStatus: http.StatusBadRequest, wantBody: raw},
		{name: "no bytes kept: rendered from the fields",
			err:        &lsp.FaultError{Code: "zim:Y", String: "s", HTTPStatus: http.StatusInternalServerError},
			wantStatus: http.StatusInternalServerError,
			wantBody:   soap.MarshalFault(soap.Fault{Code: "zim:Y", String: "s"})},
		{name: "no answer at all", err: errors.New("dial failed"), wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := lspAnswer(tc.err)
			if tc.wantNil {
				assert.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			assert.Equal(t, tc.wantStatus, r.status)
			assert.Equal(t, tc.wantBody, r.body, "byte for byte")
			assert.Equal(t, "lsp_fault", r.outcome)
			assert.Equal(t, soap.ContentType, r.contentType)
		})
	}
}
