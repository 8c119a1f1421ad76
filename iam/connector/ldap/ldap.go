// Package ldap is the LDAP/AD target connector (go-ldap/ldap/v3).
//
// Accounts are inetOrgPerson entries uid=<correlation value> under the
// people OU; permissions are groupOfNames entries under the groups OU. An
// account is disabled by moving it to the disabled OU (and back to enable);
// group memberships follow the move. This marker works on any directory
// without the ppolicy overlay; an AD flavour would flip userAccountControl
// instead (not done). groupOfNames needs at least one member, so every group
// keeps the placeholder member cn=nobody, which is never reported.
//
// The connector holds one connection (go-ldap multiplexes requests on it),
// opened lazily and re-opened after a network error; it is safe for
// concurrent use. Network errors are returned wrapped in iam.ErrTransient.
// Dry run performs every search and builds every request, and skips only
// the final Add/Modify/ModifyDN/Del call.
package ldap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/aortagw/aortagw/iam"
)

// Config configures the connector.
type Config struct {
	Name        string `yaml:"name"`
	URL         string `yaml:"url"` // ldap://host:port or ldaps://
	BindDN      string `yaml:"bindDN"`
	Password    string `yaml:"-"` // from passwordFile
	PeopleDN    string `yaml:"peopleDN"`
	DisabledDN  string `yaml:"disabledDN"`
	GroupsDN    string `yaml:"groupsDN"`
	Concurrency int    `yaml:"concurrency"`
	Timeout     time.Duration
}

// Connector is the LDAP target.
type Connector struct {
	cfg  Config
	mu   sync.Mutex
	conn *goldap.Conn
}

var (
	_ iam.Connector     = (*Connector)(nil)
	_ iam.AccountLookup = (*Connector)(nil)
)

// ErrConfig is returned for an incomplete configuration.
var ErrConfig = errors.New("iam/ldap: invalid configuration")

const placeholder = "cn=nobody"

// New validates the configuration. It does no I/O.
func New(cfg Config) (*Connector, error) {
	if cfg.Name == "" || cfg.URL == "" || cfg.PeopleDN == "" || cfg.DisabledDN == "" || cfg.GroupsDN == "" {
		return nil, fmt.Errorf("%w: name, url, peopleDN, disabledDN and groupsDN are required", ErrConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Connector{cfg: cfg}, nil
}

// Name implements iam.Connector.
func (c *Connector) Name() string { return c.cfg.Name }

// Capabilities implements iam.Connector.
func (c *Connector) Capabilities() iam.Capabilities {
	n := c.cfg.Concurrency
	if n <= 0 {
		n = 4
	}
	return iam.Capabilities{Concurrency: n}
}

// Close closes the connection.
func (c *Connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		err := c.conn.Close()
		c.conn = nil
		return err
	}
	return nil
}

func (c *Connector) get() (*goldap.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.conn.IsClosing() {
		return c.conn, nil
	}
	conn, err := goldap.DialURL(c.cfg.URL, goldap.DialWithDialer(&net.Dialer{Timeout: c.cfg.Timeout}))
	if err != nil {
		return nil, fmt.Errorf("%w: ldap dial (url=%s): %v", iam.ErrTransient, c.cfg.URL, err)
	}
	conn.SetTimeout(c.cfg.Timeout)
	if c.cfg.BindDN != "" {
		if err := conn.Bind(c.cfg.BindDN, c.cfg.Password); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("iam/ldap: bind (dn=%s): %w", c.cfg.BindDN, err)
		}
	}
	c.conn = conn
	return conn, nil
}

// classify wraps network errors as transient and drops the broken connection.
func (c *Connector) classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if goldap.IsErrorAnyOf(err, goldap.ErrorNetwork, goldap.LDAPResultBusy, goldap.LDAPResultUnavailable, goldap.LDAPResultServerDown) {
		c.mu.Lock()
		if c.conn != nil {
			_ = c.conn.Close()
			c.conn = nil
		}
		c.mu.Unlock()
		return fmt.Errorf("%w: ldap %s: %v", iam.ErrTransient, what, err)
	}
	return fmt.Errorf("iam/ldap: %s: %w", what, err)
}

var userAttrs = []string{"uid", "employeeNumber", "givenName", "sn", "displayName", "mail", "title", "departmentNumber", "l"}

// attribute mapping: standard name -> LDAP attribute
var attrMap = [][2]string{
	{"givenName", "givenName"}, {"familyName", "sn"}, {"displayName", "displayName"}, {"email", "mail"},
	{"function", "title"}, {"department", "departmentNumber"}, {"location", "l"},
}

func (c *Connector) search(conn *goldap.Conn, filter string) ([]*goldap.Entry, error) {
	var out []*goldap.Entry
	for _, base := range []string{c.cfg.PeopleDN, c.cfg.DisabledDN} {
		req := goldap.NewSearchRequest(base, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false, filter, userAttrs, nil)
		res, err := conn.SearchWithPaging(req, 500)
		if err != nil {
			if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
				continue
			}
			return nil, c.classify(err, "search")
		}
		out = append(out, res.Entries...)
	}
	return out, nil
}

func (c *Connector) groups(conn *goldap.Conn, filter string) (map[string][]string, error) {
	req := goldap.NewSearchRequest(c.cfg.GroupsDN, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false, filter, []string{"cn", "member"}, nil)
	res, err := conn.SearchWithPaging(req, 500)
	if err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return map[string][]string{}, nil
		}
		return nil, c.classify(err, "search groups")
	}
	byMember := map[string][]string{}
	for _, e := range res.Entries {
		cn := e.GetAttributeValue("cn")
		for _, m := range e.GetAttributeValues("member") {
			k := strings.ToLower(m)
			byMember[k] = append(byMember[k], cn)
		}
	}
	return byMember, nil
}

func (c *Connector) toAccount(e *goldap.Entry, groups map[string][]string) iam.Account {
	a := iam.Account{Target: c.cfg.Name, Ref: e.GetAttributeValue("uid"), Key: e.GetAttributeValue("employeeNumber"),
		Enabled: strings.HasSuffix(strings.ToLower(e.DN), ","+strings.ToLower(c.cfg.PeopleDN)), Attributes: map[string]string{}}
	for _, m := range attrMap {
		a.Attributes[m[0]] = e.GetAttributeValue(m[1])
	}
	a.Permissions = append([]string(nil), groups[strings.ToLower(e.DN)]...)
	sort.Strings(a.Permissions)
	return a
}

// ImportAll implements iam.Connector.
func (c *Connector) ImportAll(ctx context.Context) ([]iam.Account, error) {
	conn, err := c.get()
	if err != nil {
		return nil, err
	}
	es, err := c.search(conn, "(objectClass=inetOrgPerson)")
	if err != nil {
		return nil, err
	}
	gs, err := c.groups(conn, "(objectClass=groupOfNames)")
	if err != nil {
		return nil, err
	}
	out := make([]iam.Account, 0, len(es))
	for _, e := range es {
		out = append(out, c.toAccount(e, gs))
	}
	return out, nil
}

// Lookup implements iam.AccountLookup.
func (c *Connector) Lookup(ctx context.Context, key string) ([]iam.Account, error) {
	conn, err := c.get()
	if err != nil {
		return nil, err
	}
	es, err := c.search(conn, "(&(objectClass=inetOrgPerson)(employeeNumber="+goldap.EscapeFilter(key)+"))")
	if err != nil {
		return nil, err
	}
	var out []iam.Account
	for _, e := range es {
		gs, err := c.groups(conn, "(&(objectClass=groupOfNames)(member="+goldap.EscapeFilter(e.DN)+"))")
		if err != nil {
			return nil, err
		}
		out = append(out, c.toAccount(e, gs))
	}
	return out, nil
}

// ListPermissions implements iam.Connector.
func (c *Connector) ListPermissions(ctx context.Context) ([]string, error) {
	conn, err := c.get()
	if err != nil {
		return nil, err
	}
	req := goldap.NewSearchRequest(c.cfg.GroupsDN, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=groupOfNames)", []string{"cn"}, nil)
	res, err := conn.SearchWithPaging(req, 500)
	if err != nil {
		return nil, c.classify(err, "list groups")
	}
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.GetAttributeValue("cn"))
	}
	sort.Strings(out)
	return out, nil
}

func (c *Connector) dnFor(ref string, enabled bool) string {
	base := c.cfg.DisabledDN
	if enabled {
		base = c.cfg.PeopleDN
	}
	return "uid=" + goldap.EscapeDN(ref) + "," + base
}

// find returns the entry of ref (in either OU) or nil.
// account connects and finds the account entry of ref; the entry is nil when
// there is none.
func (c *Connector) account(ref string) (*goldap.Conn, *goldap.Entry, error) {
	conn, err := c.get()
	if err != nil {
		return nil, nil, err
	}
	e, err := c.find(conn, ref)
	if err != nil {
		return nil, nil, err
	}
	return conn, e, nil
}

func (c *Connector) find(conn *goldap.Conn, ref string) (*goldap.Entry, error) {
	es, err := c.search(conn, "(&(objectClass=inetOrgPerson)(uid="+goldap.EscapeFilter(ref)+"))")
	if err != nil {
		return nil, err
	}
	switch len(es) {
	case 0:
		return nil, nil
	case 1:
		return es[0], nil
	}
	return nil, fmt.Errorf("%w: (target=%s uid=%s)", iam.ErrMultipleFound, c.cfg.Name, ref)
}

func (c *Connector) mustFind(conn *goldap.Conn, ref string) (*goldap.Entry, error) {
	e, err := c.find(conn, ref)
	if err == nil && e == nil {
		err = fmt.Errorf("%w: ldap account (target=%s uid=%s)", iam.ErrNotFound, c.cfg.Name, ref)
	}
	return e, err
}

// CreateOrCorrelate implements iam.Connector: correlate on employeeNumber,
// else add uid=<key> (in the disabled OU when req.Enabled is false).
func (c *Connector) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	if req.Key == "" {
		return iam.Result{}, fmt.Errorf("%w: ldap create needs a correlation value", iam.ErrInvalid)
	}
	conn, err := c.get()
	if err != nil {
		return iam.Result{}, err
	}
	es, err := c.search(conn, "(&(objectClass=inetOrgPerson)(employeeNumber="+goldap.EscapeFilter(req.Key)+"))")
	if err != nil {
		return iam.Result{}, err
	}
	switch len(es) {
	case 0:
	case 1:
		return iam.Result{Ref: es[0].GetAttributeValue("uid"), Correlated: true, Audit: []string{"correlated " + es[0].DN}}, nil
	default:
		return iam.Result{}, fmt.Errorf("%w: (target=%s employeeNumber=%s count=%d)", iam.ErrMultipleFound, c.cfg.Name, req.Key, len(es))
	}
	ref := req.Key
	dn := c.dnFor(ref, req.Enabled)
	add := goldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"})
	add.Attribute("uid", []string{ref})
	add.Attribute("employeeNumber", []string{req.Key})
	cn := req.Attributes["displayName"]
	if cn == "" {
		cn = ref
	}
	sn := req.Attributes["familyName"]
	if sn == "" {
		sn = cn
	}
	add.Attribute("cn", []string{cn})
	add.Attribute("sn", []string{sn})
	for _, m := range attrMap {
		if m[0] == "familyName" {
			continue
		}
		if v := req.Attributes[m[0]]; v != "" {
			add.Attribute(m[1], []string{v})
		}
	}
	res := iam.Result{Ref: ref, Audit: []string{"add " + dn}}
	if req.DryRun {
		return res, nil
	}
	if err := conn.Add(add); err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultEntryAlreadyExists) {
			return iam.Result{}, fmt.Errorf("iam/ldap: uid taken by an account with another employeeNumber (uid=%s): %w", ref, err)
		}
		return iam.Result{}, c.classify(err, "add")
	}
	return res, nil
}

// Update implements iam.Connector: replaces the mapped attributes that differ.
func (c *Connector) Update(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	conn, err := c.get()
	if err != nil {
		return iam.Result{}, err
	}
	e, err := c.mustFind(conn, req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	mod := goldap.NewModifyRequest(e.DN, nil)
	var changed []string
	for _, m := range attrMap {
		want, ok := req.Attributes[m[0]]
		if !ok || e.GetAttributeValue(m[1]) == want {
			continue
		}
		changed = append(changed, m[1])
		switch {
		case want == "" && (m[1] == "sn"):
			continue // sn is mandatory; keep the old value
		case want == "":
			mod.Delete(m[1], nil)
		default:
			mod.Replace(m[1], []string{want})
		}
	}
	if len(mod.Changes) == 0 {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"modify " + e.DN + " " + strings.Join(changed, ",")}}
	if req.DryRun {
		return res, nil
	}
	return res, c.classify(conn.Modify(mod), "modify")
}

// move moves the account between the people and disabled OUs and rewrites
// its group memberships.
func (c *Connector) move(req iam.AccountRequest, enable bool) (iam.Result, error) {
	conn, err := c.get()
	if err != nil {
		return iam.Result{}, err
	}
	e, err := c.mustFind(conn, req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	target := c.dnFor(req.Ref, enable)
	if strings.EqualFold(e.DN, target) {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	gs, err := c.groups(conn, "(&(objectClass=groupOfNames)(member="+goldap.EscapeFilter(e.DN)+"))")
	if err != nil {
		return iam.Result{}, err
	}
	sup := c.cfg.DisabledDN
	if enable {
		sup = c.cfg.PeopleDN
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"move " + e.DN + " -> " + target}}
	if req.DryRun {
		return res, nil
	}
	if err := conn.ModifyDN(goldap.NewModifyDNRequest(e.DN, "uid="+goldap.EscapeDN(req.Ref), true, sup)); err != nil {
		return iam.Result{}, c.classify(err, "modrdn")
	}
	for _, g := range gs[strings.ToLower(e.DN)] {
		mod := goldap.NewModifyRequest(c.groupDN(g), nil)
		mod.Delete("member", []string{e.DN})
		mod.Add("member", []string{target})
		if err := conn.Modify(mod); err != nil {
			return iam.Result{}, c.classify(err, "move membership")
		}
	}
	return res, nil
}

// Enable implements iam.Connector.
func (c *Connector) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.move(req, true)
}

// Disable implements iam.Connector.
func (c *Connector) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.move(req, false)
}

// Delete implements iam.Connector: removes memberships and the entry.
func (c *Connector) Delete(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	conn, e, err := c.account(req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	if e == nil {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	gs, err := c.groups(conn, "(&(objectClass=groupOfNames)(member="+goldap.EscapeFilter(e.DN)+"))")
	if err != nil {
		return iam.Result{}, err
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"delete " + e.DN}}
	if req.DryRun {
		return res, nil
	}
	for _, g := range gs[strings.ToLower(e.DN)] {
		mod := goldap.NewModifyRequest(c.groupDN(g), nil)
		mod.Delete("member", []string{e.DN})
		if err := conn.Modify(mod); err != nil && !goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchAttribute) {
			return iam.Result{}, c.classify(err, "remove membership")
		}
	}
	return res, c.classify(conn.Del(goldap.NewDelRequest(e.DN, nil)), "delete")
}

func (c *Connector) groupDN(cn string) string {
	return "cn=" + goldap.EscapeDN(cn) + "," + c.cfg.GroupsDN
}

// Grant implements iam.Connector: adds the member, creating the group when absent.
func (c *Connector) Grant(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	conn, err := c.get()
	if err != nil {
		return iam.Result{}, err
	}
	e, err := c.mustFind(conn, req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	gdn := c.groupDN(permission)
	// Ask the server whether the DN is a member instead of reading every
	// member value: groups can hold thousands.
	gr, err := conn.Search(goldap.NewSearchRequest(gdn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=groupOfNames)", []string{"cn"}, nil))
	exists := true
	if err != nil {
		if !goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return iam.Result{}, c.classify(err, "read group")
		}
		exists = false
	}
	if exists && len(gr.Entries) == 1 {
		mr, err := conn.Search(goldap.NewSearchRequest(gdn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false,
			"(member="+goldap.EscapeFilter(e.DN)+")", []string{"cn"}, nil))
		if err != nil {
			return iam.Result{}, c.classify(err, "check membership")
		}
		if len(mr.Entries) == 1 {
			return iam.Result{Ref: req.Ref, NoChange: true}, nil
		}
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"member+ " + gdn}}
	if !exists {
		add := goldap.NewAddRequest(gdn, nil)
		add.Attribute("objectClass", []string{"top", "groupOfNames"})
		add.Attribute("cn", []string{permission})
		add.Attribute("member", []string{placeholder, e.DN})
		res.Audit = []string{"add group " + gdn + " with member"}
		if req.DryRun {
			return res, nil
		}
		err := conn.Add(add)
		if err == nil || !goldap.IsErrorWithCode(err, goldap.LDAPResultEntryAlreadyExists) {
			return res, c.classify(err, "add group")
		}
		// created concurrently by another grant: add the member instead
	}
	mod := goldap.NewModifyRequest(gdn, nil)
	mod.Add("member", []string{e.DN})
	if req.DryRun {
		return res, nil
	}
	if err := conn.Modify(mod); err != nil && !goldap.IsErrorWithCode(err, goldap.LDAPResultAttributeOrValueExists) {
		return iam.Result{}, c.classify(err, "add member")
	}
	return res, nil
}

// Revoke implements iam.Connector.
func (c *Connector) Revoke(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	conn, e, err := c.account(req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	if e == nil {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	gdn := c.groupDN(permission)
	mod := goldap.NewModifyRequest(gdn, nil)
	mod.Delete("member", []string{e.DN})
	res := iam.Result{Ref: req.Ref, Audit: []string{"member- " + gdn}}
	if req.DryRun {
		return res, nil
	}
	if err := conn.Modify(mod); err != nil {
		if goldap.IsErrorAnyOf(err, goldap.LDAPResultNoSuchAttribute, goldap.LDAPResultNoSuchObject) {
			return iam.Result{Ref: req.Ref, NoChange: true}, nil
		}
		return iam.Result{}, c.classify(err, "remove member")
	}
	return res, nil
}
