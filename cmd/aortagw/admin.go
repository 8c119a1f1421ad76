package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aortagw/aortagw/gateway"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/gateway/store"
)

// newAdminCmd is `aortagw admin list|revoke|expiring|block|unblock|revoke-mandates|register`.
// Everything but register works on the store directly (--db); register needs
// the gateway's token validation and is wired to registerToken.
func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Register, list, revoke and report enrolment and mandate tokens",
	}
	cmd.AddCommand(newAdminListCmd(), newAdminRevokeCmd(), newAdminExpiringCmd(), newAdminActorCmd("block"),
		newAdminActorCmd("unblock"), newAdminRevokeMandatesCmd(), newAdminRegisterCmd())
	return cmd
}

func adminWho() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

func printTokens(cmd *cobra.Command, ts []store.TokenInfo) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "KIND\tID\tURA\tBSN/GIVER\tCONTEXT\tMANDATED\tVALID UNTIL\tSTATUS")
	for _, t := range ts {
		who := t.BSN
		if t.Kind == store.KindMandate {
			who = t.GiverUZI
		}
		status := "valid"
		if t.Revocation != nil {
			status = fmt.Sprintf("revoked %s by %s: %s", t.Revocation.At.Format(time.DateOnly), t.Revocation.By, t.Revocation.Reason)
		} else if !t.ValidUntil.After(time.Now()) {
			status = "expired"
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Kind, t.ID, t.URA, who, t.Context,
			strings.Join(t.Mandated, ","), t.ValidUntil.Local().Format("2006-01-02 15:04"), status)
	}
	_ = w.Flush()
}

func newAdminListCmd() *cobra.Command {
	var dsn string
	var f store.ListFilter
	var kind string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered enrolment and mandate tokens (never their bodies)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch kind {
			case "", "enrolment", "mandate":
				f.Kind = store.TokenKind(kind)
			default:
				return fmt.Errorf("--kind must be enrolment or mandate (got %q)", kind)
			}
			f.IncludeRevoked, f.IncludeExpired = all, all
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			ts, err := s.ListTokens(cmd.Context(), f)
			if err != nil {
				return err
			}
			printTokens(cmd, ts)
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "", "enrolment or mandate (default both)")
	fl.StringVar(&f.URA, "ura", "", "organisation (URA)")
	fl.StringVar(&f.BSN, "bsn", "", "patient (enrolments)")
	fl.StringVar(&f.GiverUZI, "giver", "", "mandate giver UZI number")
	fl.BoolVar(&all, "all", false, "include revoked and expired tokens")
	fl.IntVar(&f.Limit, "limit", 1000, "at most this many")
	return cmd
}

func newAdminRevokeCmd() *cobra.Command {
	var dsn, reason, by string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an enrolment or mandate token (effective at once on every replica)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required")
			}
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.Revoke(cmd.Context(), args[0], reason, by); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.Flags().StringVar(&by, "by", adminWho(), "who revokes (recorded in the audit log)")
	return cmd
}

// parseDays accepts "30", "30d" or a Go duration ("720h").
func parseDays(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 {
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want days (30, 30d) or a duration (720h), got %q", s)
	}
	return d, nil
}

func newAdminExpiringCmd() *cobra.Command {
	var dsn, within string
	cmd := &cobra.Command{
		Use:   "expiring",
		Short: "Report tokens that expire soon: enrolments (1.5 years) and mandates (token end or card expiry)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parseDays(within)
			if err != nil {
				return fmt.Errorf("--within: %w", err)
			}
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			ts, err := s.Expiring(cmd.Context(), d)
			if err != nil {
				return err
			}
			printTokens(cmd, ts)
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	cmd.Flags().StringVar(&within, "within", "30", "window in days (30, 30d) or a duration")
	return cmd
}

func newAdminActorCmd(action string) *cobra.Command {
	var dsn, reason string
	short := "Block a UZI number: no mandate is used for it, as giver or as mandated actor"
	if action == "unblock" {
		short = "Lift a block on a UZI number"
	}
	cmd := &cobra.Command{
		Use:   action + " UZI",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required")
			}
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			if action == "block" {
				err = s.BlockActor(cmd.Context(), args[0], reason)
			} else {
				err = s.UnblockActor(cmd.Context(), args[0], reason)
			}
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "%sed %s\n", action, args[0])
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func newAdminRevokeMandatesCmd() *cobra.Command {
	var dsn, reason string
	cmd := &cobra.Command{
		Use:   "revoke-mandates UZI",
		Short: "Revoke every mandate given by a UZI number (a leaver)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required")
			}
			s, err := storeOpenCLI(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := s.RevokeMandatesOf(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "revoked %d mandate(s) of %s\n", n, args[0])
			return nil
		},
	}
	storeDBFlag(cmd, &dsn)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

// registerArgs is what `admin register` collected from the command line.
type registerArgs struct {
	Kind   string   // "enrolment" or "mandate"
	Files  []string // signed token files (the assertion XML, byte for byte)
	Config string   // gateway config file (trust roots, CRLs, URA, store DSN)
	DSN    string   // --db override
	By     string
}

func newAdminRegisterCmd() *cobra.Command {
	var a registerArgs
	cmd := &cobra.Command{
		Use:   "register enrolment|mandate FILE...",
		Short: "Validate signed enrolment or mandate tokens with the configured UZI trust and store them",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "enrolment", "inschrijf", "mandate", "mandaat":
			default:
				return fmt.Errorf("first argument must be enrolment or mandate (got %q)", args[0])
			}
			a.Kind, a.Files = args[0], args[1:]
			return registerToken(cmd, a)
		},
	}
	storeDBFlag(cmd, &a.DSN)
	cmd.Flags().StringVarP(&a.Config, "config", "c", "", "gateway configuration file (trust roots, CRLs, URA)")
	cmd.Flags().StringVar(&a.By, "by", adminWho(), "who registers (recorded in the audit log)")
	return cmd
}

// registerToken validates each file with the gateway's token validator (trust
// roots, CRLs and URA from the gateway configuration) and stores it; one bad
// file stores nothing.
func registerToken(cmd *cobra.Command, a registerArgs) error {
	f := configFlags{file: a.Config, store: a.DSN}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	return gateway.RegisterFiles(cmd.Context(), cfg, a.Kind, a.Files, a.By, cmd.OutOrStdout())
}
