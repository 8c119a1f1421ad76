//go:build cgo && !nopkcs11

package pkcs11

import (
	"crypto/x509"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Inspect lists the slots, tokens, mechanisms and objects of the module at modulePath (for
// `aortagw hsm list`). With pinFile set it logs in once (exactly one attempt) to the token
// labelled loginToken, and only to that one, so its private keys are listed too: a PIN is never
// tried on another token (a smartcard counts every wrong PIN towards its lock). pinFile without
// loginToken is refused with ErrInvalidURI. The module is loaded through the shared registry and
// released before Inspect returns. Like OpenAdmin it takes no allow-list: the operator names the
// module.
func Inspect(modulePath, pinFile, loginToken string) (*ModuleListing, error) {
	if pinFile != "" && loginToken == "" {
		return nil, fmt.Errorf("%w: a PIN file needs the label of the one token to log in to", ErrInvalidURI)
	}
	lib, err := loadModule(modulePath)
	if err != nil {
		return nil, err
	}
	defer lib.release()
	m := lib.mod
	out := &ModuleListing{Path: modulePath}
	if info, err := m.GetInfo(); err == nil {
		out.Manufacturer, out.Description = info.ManufacturerID, info.LibraryDescription
		out.CryptokiVersion = fmt.Sprintf("%d.%d", info.CryptokiVersion.Major, info.CryptokiVersion.Minor)
		out.LibraryVersion = fmt.Sprintf("%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor)
	}
	slots, err := m.GetSlotList(false)
	if err != nil {
		return nil, opErr("C_GetSlotList", err)
	}
	for _, s := range slots {
		sl := SlotListing{ID: s}
		si, err := m.GetSlotInfo(s)
		if err != nil {
			return nil, opErr("C_GetSlotInfo", err)
		}
		sl.Description, sl.Manufacturer = si.SlotDescription, si.ManufacturerID
		if si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0 {
			tl, err := inspectToken(m, s, modulePath, pinFile, loginToken)
			if err != nil {
				return nil, err
			}
			sl.Token = tl
		}
		out.Slots = append(out.Slots, sl)
	}
	return out, nil
}

func sessionCount(n uint) string {
	switch n {
	case pkcs11.CK_EFFECTIVELY_INFINITE:
		return "unlimited"
	case pkcs11.CK_UNAVAILABLE_INFORMATION:
		return "unknown"
	}
	return fmt.Sprint(n)
}

func inspectToken(m module, slot uint, modulePath, pinFile, loginToken string) (*TokenListing, error) {
	ti, err := m.GetTokenInfo(slot)
	if err != nil {
		return nil, opErr("C_GetTokenInfo", err)
	}
	tl := &TokenListing{Label: ti.Label, Manufacturer: ti.ManufacturerID, Model: ti.Model, Serial: ti.SerialNumber,
		Initialized:   ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0,
		LoginRequired: ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0,
		MaxSessions:   sessionCount(ti.MaxSessionCount), MaxRwSessions: sessionCount(ti.MaxRwSessionCount)}
	if ti.Label != loginToken {
		pinFile = "" // never try a PIN on a token it was not given for
	}
	base := &URI{path: map[string]string{"token": ti.Label, "serial": ti.SerialNumber}, query: map[string]string{"module-path": modulePath}}
	if pinFile != "" {
		base.query["pin-source"] = "file:" + pinFile
	}
	tl.URI = base.Redacted()
	if mechs, err := m.GetMechanismList(slot); err == nil {
		for _, x := range mechs {
			tl.Mechanisms = append(tl.Mechanisms, mechanismName(x.Mechanism))
		}
	}
	if !tl.Initialized {
		return tl, nil
	}
	sh, err := m.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, opErr("C_OpenSession", err)
	}
	defer func() { _ = m.CloseSession(sh) }()
	if pinFile != "" {
		pin, err := readPINFile(pinFile)
		if err != nil {
			return nil, err
		}
		err = m.Login(sh, pkcs11.CKU_USER, pin)
		wipe(pin)
		if c, ok := rv(err); err == nil || ok && c == pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			tl.LoggedIn = true
		} else if isPINError(err) {
			return nil, fmt.Errorf("%w: (token=%s): %w", ErrPIN, ti.Label, opErr("C_Login", err))
		} else {
			return nil, fmt.Errorf("login (token=%s): %w", ti.Label, opErr("C_Login", err))
		}
	}
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_CERTIFICATE} {
		hs, err := findObjects(m, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}, 256)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			tl.Objects = append(tl.Objects, inspectObject(m, sh, h, class, base))
		}
	}
	return tl, nil
}

func inspectObject(m module, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, class uint, base *URI) ObjectListing {
	var o ObjectListing
	get := func(t uint) []byte {
		a, err := m.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(t, nil)})
		if err != nil || len(a) == 0 {
			return nil
		}
		return a[0].Value
	}
	o.ID, o.Label = get(pkcs11.CKA_ID), string(get(pkcs11.CKA_LABEL))
	u := &URI{path: map[string]string{}, query: map[string]string{}}
	for k, v := range base.path {
		u.path[k] = v
	}
	for k, v := range base.query {
		u.query[k] = v
	}
	u.path["id"] = string(o.ID)
	switch class {
	case pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY:
		o.Class = "public-key"
		u.path["type"] = "public"
		if class == pkcs11.CKO_PRIVATE_KEY {
			o.Class = "private-key"
			u.path["type"] = "private"
			o.AlwaysAuthenticate = attrBool(&pkcs11.Attribute{Value: get(pkcs11.CKA_ALWAYS_AUTHENTICATE)})
		}
		switch attrUint(&pkcs11.Attribute{Value: get(pkcs11.CKA_KEY_TYPE)}) {
		case pkcs11.CKK_RSA:
			o.KeyType = "RSA"
			if mod := get(pkcs11.CKA_MODULUS); len(mod) > 0 {
				o.KeyType = fmt.Sprintf("RSA-%d", len(mod)*8)
			} else if bits := get(pkcs11.CKA_MODULUS_BITS); len(bits) > 0 {
				o.KeyType = fmt.Sprintf("RSA-%d", attrUint(&pkcs11.Attribute{Value: bits}))
			}
		case pkcs11.CKK_EC:
			o.KeyType = "EC"
		default:
			o.KeyType = "other"
		}
	case pkcs11.CKO_CERTIFICATE:
		o.Class = "certificate"
		u.path["type"] = "cert"
		if c, err := x509.ParseCertificate(get(pkcs11.CKA_VALUE)); err == nil {
			o.Subject, o.Issuer = c.Subject.String(), c.Issuer.String()
			o.Serial = c.SerialNumber.Text(16)
			o.NotAfter = c.NotAfter.UTC().Format("2006-01-02")
			o.KeyUsage = keyUsageNames(c.KeyUsage)
		}
	}
	o.URI = u.Redacted()
	return o
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// mechanismName names the mechanisms a signing gateway cares about; others print in hex.
func mechanismName(m uint) string {
	names := map[uint]string{
		pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN", pkcs11.CKM_RSA_PKCS: "CKM_RSA_PKCS",
		pkcs11.CKM_RSA_PKCS_PSS: "CKM_RSA_PKCS_PSS", pkcs11.CKM_RSA_PKCS_OAEP: "CKM_RSA_PKCS_OAEP",
		pkcs11.CKM_RSA_X_509: "CKM_RSA_X_509", pkcs11.CKM_SHA1_RSA_PKCS: "CKM_SHA1_RSA_PKCS",
		pkcs11.CKM_SHA256_RSA_PKCS: "CKM_SHA256_RSA_PKCS", pkcs11.CKM_SHA384_RSA_PKCS: "CKM_SHA384_RSA_PKCS",
		pkcs11.CKM_SHA512_RSA_PKCS: "CKM_SHA512_RSA_PKCS", pkcs11.CKM_SHA256_RSA_PKCS_PSS: "CKM_SHA256_RSA_PKCS_PSS",
		pkcs11.CKM_SHA384_RSA_PKCS_PSS: "CKM_SHA384_RSA_PKCS_PSS", pkcs11.CKM_SHA512_RSA_PKCS_PSS: "CKM_SHA512_RSA_PKCS_PSS",
		pkcs11.CKM_EC_KEY_PAIR_GEN: "CKM_EC_KEY_PAIR_GEN", pkcs11.CKM_ECDSA: "CKM_ECDSA",
		pkcs11.CKM_ECDSA_SHA256: "CKM_ECDSA_SHA256", pkcs11.CKM_ECDSA_SHA384: "CKM_ECDSA_SHA384",
		pkcs11.CKM_ECDSA_SHA512: "CKM_ECDSA_SHA512", pkcs11.CKM_SHA256: "CKM_SHA256", pkcs11.CKM_SHA384: "CKM_SHA384",
		pkcs11.CKM_SHA512: "CKM_SHA512", pkcs11.CKM_SHA_1: "CKM_SHA_1", pkcs11.CKM_AES_KEY_GEN: "CKM_AES_KEY_GEN",
		pkcs11.CKM_AES_GCM: "CKM_AES_GCM", pkcs11.CKM_AES_CBC: "CKM_AES_CBC", pkcs11.CKM_ECDH1_DERIVE: "CKM_ECDH1_DERIVE",
	}
	if n, ok := names[m]; ok {
		return n
	}
	return fmt.Sprintf("0x%08X", m)
}
