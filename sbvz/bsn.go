package sbvz

import "github.com/aortagw/aortagw/internal/uzi"

// ValidBSN reports whether s is a burgerservicenummer: nine ASCII digits, not
// all zero, passing the eleven-test (9*d1 + 8*d2 + ... + 2*d8 - 1*d9 is a
// multiple of 11). It is internal/uzi's test, re-exported for callers of sbvz.
func ValidBSN(s string) bool { return uzi.ValidBSN(s) }

// bsnCheckDigit returns the ninth digit that makes the eight-digit prefix a
// valid BSN, or -1 when no digit does (the remainder would be 10).
func bsnCheckDigit(prefix string) int {
	if len(prefix) != 8 {
		return -1
	}
	sum := 0
	for i := 0; i < 8; i++ {
		c := prefix[i]
		if c < '0' || c > '9' {
			return -1
		}
		sum += int(c-'0') * (9 - i)
	}
	d := sum % 11
	if d == 10 {
		return -1
	}
	return d
}
