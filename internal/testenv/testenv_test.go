package testenv

import (
	"testing"
)

func TestStrictFollowsCI(t *testing.T) {
	t.Setenv("AORTAGW_REQUIRE_ALL", "")
	t.Setenv("CI", "true")
	if !Strict() {
		t.Fatal("CI=true must make missing components fatal")
	}
	t.Setenv("CI", "")
	if Strict() {
		t.Fatal("without CI or AORTAGW_REQUIRE_ALL, missing components must skip")
	}
	t.Setenv("AORTAGW_REQUIRE_ALL", "1")
	if !Strict() {
		t.Fatal("AORTAGW_REQUIRE_ALL=1 must make missing components fatal")
	}
}

func TestPostgresDatabaseIsUsable(t *testing.T) {
	u := PostgresDatabase(t)
	if u == "" {
		t.Fatal("empty database url")
	}
}
