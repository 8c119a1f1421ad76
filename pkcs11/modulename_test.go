package pkcs11

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestModuleByName(t *testing.T) {
	allowed := []string{"/usr/lib/softhsm/libsofthsm2.so", "/opt/safesign/lib/libaetpkss.so.3.0.3", "/opt/vendor/cryptoki.so"}
	tests := []struct {
		name, want string
		err        error
	}{
		{name: "softhsm2", want: "/usr/lib/softhsm/libsofthsm2.so"},
		{name: "aetpkss", want: "/opt/safesign/lib/libaetpkss.so.3.0.3"},
		{name: "cryptoki", want: "/opt/vendor/cryptoki.so"},
		{name: "libsofthsm2", want: "/usr/lib/softhsm/libsofthsm2.so"}, // with the prefix, too
		{name: "softhsm", err: ErrModuleNotAllowed},                    // no partial match
		{name: "opensc-pkcs11", err: ErrModuleNotAllowed},
		{name: "../softhsm2", err: ErrInvalidURI},
		{name: "/usr/lib/softhsm/libsofthsm2.so", err: ErrInvalidURI},
		{name: "", err: ErrInvalidURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := moduleByName(tc.name, allowed)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := moduleByName("softhsm2", []string{"/a/libsofthsm2.so", "/b/softhsm2.so"})
	require.ErrorIs(t, err, ErrModuleNotAllowed, "two allowed modules of one name: ambiguous")
	_, err = moduleByName("softhsm2", nil)
	require.ErrorIs(t, err, ErrModuleNotAllowed, "nothing allowed, nothing found")
	assert.False(t, moduleFileIs("libsofthsm2.so.x", "softhsm2"))
	assert.False(t, moduleFileIs("libsofthsm2.so.", "softhsm2"))
}
