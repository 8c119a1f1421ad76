package pkcs11

// ModuleListing is what Inspect reports about a module: plain values, no PINs, no secrets.
type ModuleListing struct {
	Path, Manufacturer, Description string
	CryptokiVersion, LibraryVersion string
	Slots                           []SlotListing
}

// SlotListing describes one slot and its token, if present.
type SlotListing struct {
	ID                        uint
	Description, Manufacturer string
	Token                     *TokenListing // nil when no token is present
}

// TokenListing describes a token: identity, limits, mechanisms and objects.
type TokenListing struct {
	Label, Manufacturer, Model, Serial string
	Initialized, LoginRequired         bool
	MaxSessions, MaxRwSessions         string // a number, "unlimited" or "unknown"
	Mechanisms                         []string
	LoggedIn                           bool // objects include private keys only when true
	Objects                            []ObjectListing
	URI                                string // token URI for this module (no PIN)
}

// ObjectListing describes one key or certificate object.
type ObjectListing struct {
	Class              string // "private-key", "public-key", "certificate"
	ID                 []byte
	Label              string
	KeyType            string // "RSA-2048", "EC", ... for keys
	AlwaysAuthenticate bool   // private keys
	Subject, Issuer    string // certificates
	Serial, NotAfter   string
	KeyUsage           []string
	URI                string // object URI for this module (no PIN)
}
