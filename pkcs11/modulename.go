package pkcs11

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// moduleByName maps an RFC 7512 module-name (the library's name without
// platform prefix or suffix, section 2.3) to the one allow-listed module
// whose file name is that name with "lib" and/or ".so[.N...]" around it:
// module-name=softhsm2 finds /usr/lib/softhsm/libsofthsm2.so. The name never
// reaches the file system: only allow-listed paths are candidates, so a
// module-name cannot load anything the operator did not allow. No match, or
// more than one, is an error.
func moduleByName(name string, allowed []string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("%w: module-name must be a bare library name (module-name=%q)", ErrInvalidURI, name)
	}
	var found []string
	for _, a := range allowed {
		if moduleFileIs(filepath.Base(a), name) {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%w: no allowed module is named %q (module-name)", ErrModuleNotAllowed, name)
	default:
		return "", fmt.Errorf("%w: module-name %q matches several allowed modules (%s); use module-path",
			ErrModuleNotAllowed, name, strings.Join(found, ", "))
	}
}

// moduleFileIs reports whether file is name with an optional "lib" prefix
// and a ".so" suffix, itself optionally followed by version numbers.
func moduleFileIs(file, name string) bool {
	for _, f := range []string{file, strings.TrimPrefix(file, "lib")} {
		if rest, ok := strings.CutPrefix(f, name+".so"); ok && reSOVersion.MatchString(rest) {
			return true
		}
	}
	return false
}

var reSOVersion = regexp.MustCompile(`^(\.[0-9]+)*$`)
