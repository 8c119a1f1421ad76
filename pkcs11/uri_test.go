package pkcs11

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The examples of RFC 7512 section 3 (with errata 5499/5500), and what we make of them.
func TestParseURIRFC7512Examples(t *testing.T) {
	for _, tc := range []struct {
		name  string
		uri   string
		path  map[string]string
		query map[string]string
		err   bool // we refuse it
	}{
		{name: "empty", uri: "pkcs11:"},
		{name: "object and type", uri: "pkcs11:object=my-pubkey;type=public",
			path: map[string]string{"object": "my-pubkey", "type": "public"}},
		{name: "token and pin-value", uri: "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
			path: map[string]string{"object": "my-key", "type": "private"}, query: map[string]string{"pin-source": "file:/etc/token"}},
		{name: "escaped token", uri: "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
			path: map[string]string{"token": "The Software PKCS#11 Softtoken", "manufacturer": "Snake Oil, Inc.", "model": "1.0",
				"object": "my-certificate", "type": "cert", "id": "\x69\x95\x3e\x5c\xf4\xbd\xec\x91", "serial": ""},
			query: map[string]string{"pin-source": "file:/etc/token_pin"}},
		{name: "module-name", uri: "pkcs11:object=my-sign-key;type=private?module-name=mypkcs11",
			path: map[string]string{"object": "my-sign-key", "type": "private"}, query: map[string]string{"module-name": "mypkcs11"}},
		{name: "module-path", uri: "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
			path: map[string]string{"object": "my-sign-key", "type": "private"}, query: map[string]string{"module-path": "/mnt/libmypkcs11.so.1"}},
		{name: "vendor attribute refused", uri: "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin&x-vendor=aaa", err: true},
		{name: "slot description", uri: "pkcs11:slot-description=Sun%20Metaslot",
			path: map[string]string{"slot-description": "Sun Metaslot"}},
		{name: "library", uri: "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23",
			path: map[string]string{"library-manufacturer": "Snake Oil, Inc.", "library-description": "Soft Token Library", "library-version": "1.23"}},
		{name: "percent in value", uri: "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
			path: map[string]string{"token": "A name with a substring %;", "object": "my-certificate", "type": "cert"}},
		{name: "utf-8", uri: "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
			path: map[string]string{"token": "Name with a small A with acute: á", "object": "my-certificate", "type": "cert"}},
		{name: "pin-value", uri: "pkcs11:token=my-token;object=my-certificate;type=cert?pin-value=1234",
			path: map[string]string{"token": "my-token", "object": "my-certificate", "type": "cert"}, query: map[string]string{"pin-value": "1234"}},
		{name: "slot-id", uri: "pkcs11:slot-id=7", path: map[string]string{"slot-id": "7"}},
		{name: "plus stays plus", uri: "pkcs11:token=a+b", path: map[string]string{"token": "a+b"}},
		{name: "id is raw bytes not hex", uri: "pkcs11:id=7370", path: map[string]string{"id": "7370"}},
		{name: "ampersand in path", uri: "pkcs11:token=A&B", path: map[string]string{"token": "A&B"}},
		// Refusals.
		{name: "vendor path attribute", uri: "pkcs11:token=my-token;vendor-aaa=value-a", err: true},
		{name: "duplicate", uri: "pkcs11:token=a;token=b", err: true},
		{name: "duplicate query", uri: "pkcs11:?module-path=/a&module-path=/b", err: true},
		{name: "unknown", uri: "pkcs11:tokn=a", err: true},
		{name: "query attr in path", uri: "pkcs11:module-path=/lib/x.so", err: true},
		{name: "path attr in query", uri: "pkcs11:?token=a", err: true},
		{name: "bad type", uri: "pkcs11:type=secret", err: true},
		{name: "bad percent", uri: "pkcs11:token=%4", err: true},
		{name: "bad percent hex", uri: "pkcs11:token=%zz", err: true},
		{name: "space", uri: "pkcs11:token=a b", err: true},
		{name: "no equals", uri: "pkcs11:token", err: true},
		{name: "empty attribute", uri: "pkcs11:token=a;", err: true},
		{name: "wrong scheme", uri: "pkcs12:token=a", err: true},
		{name: "relative pin-source", uri: "pkcs11:token=a?pin-source=file:pin", err: true},
		{name: "pin-source not file", uri: "pkcs11:token=a?pin-source=|/bin/pinentry", err: true},
		{name: "pin-source host", uri: "pkcs11:token=a?pin-source=file://host/pin", err: true},
		{name: "pin-source unclean", uri: "pkcs11:token=a?pin-source=file:/etc/../pin", err: true},
		{name: "pin-source and pin-value", uri: "pkcs11:token=a?pin-source=file:/p&pin-value=1", err: true},
		{name: "relative module", uri: "pkcs11:token=a?module-path=lib.so", err: true},
		{name: "slot-id not a number", uri: "pkcs11:slot-id=x", err: true},
		{name: "library-version", uri: "pkcs11:library-version=1.x", err: true},
		{name: "empty query", uri: "pkcs11:token=a?", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.uri)
			if tc.err {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidURI)
				return
			}
			require.NoError(t, err)
			for k, v := range tc.path {
				got, ok := u.Path(k)
				assert.True(t, ok, k)
				assert.Equal(t, v, got, k)
			}
			assert.Len(t, u.path, len(tc.path))
			assert.Len(t, u.query, len(tc.query))
			for k, v := range tc.query {
				if k == "pin-value" {
					continue
				}
				got, ok := u.Query(k)
				assert.True(t, ok, k)
				assert.Equal(t, v, got, k)
			}
			// Formatting round-trips and never shows a PIN.
			again, err := ParseURI(u.String())
			require.NoError(t, err, u.String())
			assert.Equal(t, u.path, again.path)
			if _, ok := tc.query["pin-value"]; ok {
				assert.NotContains(t, u.String(), tc.query["pin-value"])
				assert.Contains(t, u.Redacted(), "pin-value=REDACTED")
				v, ok := u.Query("pin-value")
				assert.True(t, ok)
				assert.Empty(t, v)
			}
		})
	}
}

func TestURIErrorsDoNotEchoPIN(t *testing.T) {
	for _, s := range []string{
		"pkcs11:token=a?pin-value=s3cr%zz",
		"pkcs11:token=a?pin-value=s3cret&pin-value=s3cret",
		"pkcs11:token=a?pin-value=s3cret&pin-source=file:/p",
	} {
		_, err := ParseURI(s)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "s3cr")
	}
}

func TestURIIDAccessor(t *testing.T) {
	u, err := ParseURI("pkcs11:token=a;id=%00%FF")
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0xff}, u.ID())
	assert.Equal(t, "pkcs11:token=a;id=%00%FF", u.String())
	u, err = ParseURI("pkcs11:token=a")
	require.NoError(t, err)
	assert.Nil(t, u.ID())
	_, err = ParseURI("pkcs11:" + strings.Repeat("a", maxURILen))
	assert.ErrorIs(t, err, ErrInvalidURI)
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:", "pkcs11:token=a;id=%01?module-path=/x.so&pin-source=file:/p",
		"pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
		"pkcs11:object=my-key;type=private?pin-value=1234", "pkcs11:token=a&b;slot-id=3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		out := u.String()
		if v, ok := u.query["pin-value"]; ok && v != "" && v != "REDACTED" && strings.Contains(out, "pin-value="+v) {
			t.Fatalf("pin shown: %q", out)
		}
		again, err := ParseURI(out)
		if err != nil {
			t.Fatalf("canonical form does not parse: %q -> %q: %v", s, out, err)
		}
		for k, v := range u.path {
			if again.path[k] != v {
				t.Fatalf("round trip changed %s: %q -> %q", k, v, again.path[k])
			}
		}
		for k, v := range u.query {
			if k != "pin-value" && again.query[k] != v {
				t.Fatalf("round trip changed %s: %q -> %q", k, v, again.query[k])
			}
		}
	})
}
