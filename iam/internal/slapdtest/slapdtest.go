// Package slapdtest starts a real OpenLDAP slapd for tests and benchmarks:
// a generated slapd.conf with the mdb backend in a temporary directory,
// suffix dc=zorg,dc=test, listening on a free loopback port, run in the
// foreground (-d 0) so the test owns the process and kills it by PID on
// cleanup. It works as root in a container (no privilege drop is asked).
package slapdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aortagw/aortagw/internal/testenv"
)

// Server is a running slapd.
type Server struct {
	URL        string
	Suffix     string
	RootDN     string
	Password   string
	PeopleDN   string
	DisabledDN string
	GroupsDN   string
	PID        int
}

// Start starts slapd, seeds the base entries with ldapadd and registers
// cleanup. It skips (locally) or fails (CI) when slapd or ldapadd is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	tools := testenv.RequireTool(t, "slapd", "ldapadd")
	if tools == nil {
		return nil
	}
	slapd, ldapadd := tools[0], tools[1]
	dir := testenv.ShortTempDir(t)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatalf("slapdtest: mkdir: %v", err)
	}
	s := &Server{Suffix: "dc=zorg,dc=test", RootDN: "cn=admin,dc=zorg,dc=test", Password: "test-secret",
		PeopleDN: "ou=people,dc=zorg,dc=test", DisabledDN: "ou=disabled,dc=zorg,dc=test", GroupsDN: "ou=groups,dc=zorg,dc=test"}
	modDir := "/usr/lib/ldap"
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath %s
moduleload back_mdb
pidfile %s/slapd.pid
database mdb
maxsize 1073741824
suffix "%s"
rootdn "%s"
rootpw %s
directory %s/db
index objectClass eq
index uid,employeeNumber eq
index member eq
`, modDir, dir, s.Suffix, s.RootDN, s.Password, dir)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("slapdtest: write conf: %v", err)
	}
	port := freePort(t)
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	var stderr bytes.Buffer
	cmd := exec.Command(slapd, "-d", "0", "-h", s.URL+"/", "-f", confPath)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("slapdtest: start slapd: %v", err)
	}
	s.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if p, err := os.FindProcess(s.PID); err == nil {
			_ = p.Kill()
		}
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("slapdtest: slapd exited (err=%v): %s", werr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapdtest: slapd not listening after 15s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ldif := fmt.Sprintf(`dn: %s
objectClass: top
objectClass: dcObject
objectClass: organization
dc: zorg
o: Zorg Test

dn: %s
objectClass: organizationalUnit
ou: people

dn: %s
objectClass: organizationalUnit
ou: disabled

dn: %s
objectClass: organizationalUnit
ou: groups
`, s.Suffix, s.PeopleDN, s.DisabledDN, s.GroupsDN)
	add := exec.Command(ldapadd, "-x", "-H", s.URL, "-D", s.RootDN, "-w", s.Password)
	add.Stdin = bytes.NewBufferString(ldif)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("slapdtest: seed with ldapadd: %v: %s", err, out)
	}
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("slapdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
