package main

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	gwstore "github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/setup"
)

// newIAMCmd is `aortagw iam`: provisioning (sync, run, report, grant,
// exclude, resolve, attest, approve-import).
func newIAMCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{Use: "iam", Short: "Provisioning: sync, run, report, grant, attest"}
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "iam.yaml", "iam configuration file (YAML)")

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// openWith wires the system; reg (nil for one-shot commands) receives
	// iam's metrics.
	openWith := func(ctx context.Context, reg prometheus.Registerer) (*setup.System, func(), error) {
		f, err := setup.Load(cfgPath)
		if err != nil {
			return nil, nil, err
		}
		d := setup.Deps{Now: time.Now, NewID: newIAMID, Logger: log, Registerer: reg}
		var gw gwstore.Store
		if f.GatewayStore != "" {
			if gw, err = gwstore.Open(ctx, f.GatewayStore, gwstore.Options{Logger: log}); err != nil {
				return nil, nil, fmt.Errorf("iam: gateway store: %w", err)
			}
			d.Authority = gw
		}
		sys, err := setup.Build(ctx, f, d)
		if err != nil {
			if gw != nil {
				_ = gw.Close()
			}
			return nil, nil, err
		}
		return sys, func() {
			_ = sys.Close()
			if gw != nil {
				_ = gw.Close()
			}
		}, nil
	}
	open := func(ctx context.Context) (*setup.System, func(), error) { return openWith(ctx, nil) }

	var dryRun bool
	var allow []string
	var format string
	sync := &cobra.Command{Use: "sync", Short: "Import the sources, compare IST with SOLL on every target and apply the plan",
		RunE: func(c *cobra.Command, _ []string) error {
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			res, overlay, ierr := sys.ImportSources(c.Context(), dryRun)
			for _, r := range res {
				fmt.Fprintf(c.OutOrStdout(), "source %s: added %d, changed %d, removed %d, blocked %d%s\n", r.Source, len(r.Added), len(r.Changed),
					len(r.Removed), len(r.Blocked), pendingNote(r.Pending))
			}
			if ierr != nil {
				fmt.Fprintln(c.ErrOrStderr(), "aortagw: source import:", ierr)
			}
			ro := iam.RunOptions{DryRun: dryRun, Actor: cliActor(), Allow: map[iam.ActionType]bool{}, Overlay: overlay}
			for _, a := range allow {
				ro.Allow[iam.ActionType(a)] = true
			}
			rr, err := sys.Engine.Reconcile(c.Context(), ro)
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(c.OutOrStdout()).Encode(rr)
			}
			printRun(c.OutOrStdout(), rr)
			if len(rr.Failed()) > 0 || len(rr.Blocked) > 0 || ierr != nil {
				return &exitError{code: 1, err: errors.New("")}
			}
			return nil
		}}
	sync.Flags().BoolVar(&dryRun, "dry-run", false, "preview: run connector code up to the write, change nothing")
	sync.Flags().StringSliceVar(&allow, "allow", nil, "action types whose output threshold is overridden for this run (e.g. disable)")
	sync.Flags().StringVar(&format, "format", "table", "output: table or json")

	var metricsListen string
	run := &cobra.Command{Use: "run", Short: "Run event-driven: watch files, poll rosters, receive webhooks, reconcile periodically",
		RunE: func(c *cobra.Command, _ []string) error {
			// the only registry: iam's counters plus Go runtime and process metrics
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			sys, done, err := openWith(c.Context(), reg)
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithCancel(c.Context())
			defer cancel()
			if metricsListen != "" {
				_, wait, err := setup.ServeMetrics(ctx, metricsListen, reg, log)
				if err != nil {
					return err
				}
				defer func() { cancel(); _ = wait() }()
			}
			return sys.Run(ctx)
		}}
	run.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464); empty = off")

	var repFormat string
	report := &cobra.Command{Use: "report", Short: "Show the deviation report (IST-SOLL), blocked persons, pending imports and due confirmations",
		RunE: func(c *cobra.Command, _ []string) error {
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			rep, err := sys.Engine.Report(c.Context())
			if err != nil {
				return err
			}
			return writeReport(c.OutOrStdout(), rep, repFormat)
		}}
	report.Flags().StringVar(&repFormat, "format", "table", "table, json or csv")

	var gPerson, gEnt, gReason, gUntil string
	grant := &cobra.Command{Use: "grant", Short: "Grant an entitlement by hand (reason and end date required; audited)",
		RunE: func(c *cobra.Command, _ []string) error {
			ent, err := iam.ParseEntitlement(gEnt)
			if err != nil {
				return err
			}
			until, err := parseDay(gUntil)
			if err != nil {
				return err
			}
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			g, err := sys.Engine.AddGrant(c.Context(), iam.Grant{PersonID: gPerson, Entitlement: ent, Reason: gReason, Until: until, By: cliActor()})
			if err != nil {
				return err
			}
			rr, err := sys.Engine.SyncPerson(c.Context(), gPerson, iam.Origin{Kind: iam.OriginManualGrant, Detail: g.ID}, iam.RunOptions{Actor: cliActor()})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "grant %s: %s for %s until %s\n", g.ID, ent, gPerson, until.Format(time.DateOnly))
			printRun(c.OutOrStdout(), rr)
			return nil
		}}
	grant.Flags().StringVar(&gPerson, "person", "", "person ID")
	grant.Flags().StringVar(&gEnt, "entitlement", "", "target or target:permission")
	grant.Flags().StringVar(&gReason, "reason", "", "why (required)")
	grant.Flags().StringVar(&gUntil, "until", "", "end date YYYY-MM-DD (required)")
	for _, f := range []string{"person", "entitlement", "reason", "until"} {
		_ = grant.MarkFlagRequired(f)
	}

	var xPerson, xReason, xUntil string
	exclude := &cobra.Command{Use: "exclude", Short: "Freeze a person: no changes until a date (audited)",
		RunE: func(c *cobra.Command, _ []string) error {
			var until time.Time
			if xUntil != "" {
				var err error
				if until, err = parseDay(xUntil); err != nil {
					return err
				}
			}
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			return sys.Engine.AddExclusion(c.Context(), iam.Exclusion{PersonID: xPerson, Reason: xReason, Until: until, By: cliActor()})
		}}
	exclude.Flags().StringVar(&xPerson, "person", "", "person ID")
	exclude.Flags().StringVar(&xReason, "reason", "", "why (required)")
	exclude.Flags().StringVar(&xUntil, "until", "", "end date YYYY-MM-DD (empty: until lifted)")

	var rKey, rAction, rUntil, rNote string
	resolve := &cobra.Command{Use: "resolve", Short: "Resolve a deviation: fix, accept, or exclude until a date",
		RunE: func(c *cobra.Command, _ []string) error {
			r := iam.Resolution{Key: rKey, Action: iam.ResolutionAction(rAction), By: cliActor(), Note: rNote}
			if rUntil != "" {
				var err error
				if r.Until, err = parseDay(rUntil); err != nil {
					return err
				}
			}
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			return sys.Engine.Resolve(c.Context(), r)
		}}
	resolve.Flags().StringVar(&rKey, "key", "", "deviation key (from iam report)")
	resolve.Flags().StringVar(&rAction, "action", "", "fix, accept or exclude")
	resolve.Flags().StringVar(&rUntil, "until", "", "for exclude: YYYY-MM-DD")
	resolve.Flags().StringVar(&rNote, "note", "", "free text for the audit log")

	approve := &cobra.Command{Use: "approve-import ID", Short: "Apply a source import held back by the removal threshold", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := sys.Engine.ApproveImport(c.Context(), args[0], cliActor())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "import %s applied: removed %d; run `aortagw iam sync` (or the running daemon) to propagate\n", args[0], len(res.Removed))
			return nil
		}}

	cmd.AddCommand(sync, run, report, grant, exclude, resolve, approve, newIAMAttestCmd(open))
	return cmd
}

func newIAMAttestCmd(open func(context.Context) (*setup.System, func(), error)) *cobra.Command {
	at := &cobra.Command{Use: "attest", Short: "Attestation campaigns: managers confirm or revoke grants and employments"}
	var name, deadline string
	start := &cobra.Command{Use: "start", Short: "Start a campaign over all manual grants and running employments",
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := parseDay(deadline)
			if err != nil {
				return err
			}
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			cp, err := sys.Engine.StartCampaign(c.Context(), name, cliActor(), d)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "campaign %s: %d items, deadline %s\n", cp.ID, len(cp.Items), d.Format(time.DateOnly))
			return nil
		}}
	start.Flags().StringVar(&name, "name", "", "campaign name")
	start.Flags().StringVar(&deadline, "deadline", "", "YYYY-MM-DD; unanswered items become deviations after it")
	_ = start.MarkFlagRequired("deadline")
	var campaign, reviewer string
	list := &cobra.Command{Use: "list", Short: "List campaigns, or one campaign's items (--campaign), optionally for one reviewer",
		RunE: func(c *cobra.Command, _ []string) error {
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			defer tw.Flush()
			if campaign == "" {
				cs, err := sys.Store.Campaigns(c.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(tw, "ID\tNAME\tDEADLINE\tITEMS\tOPEN")
				for _, cp := range cs {
					open := 0
					for _, it := range cp.Items {
						if it.Decision == iam.DecisionNone {
							open++
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", cp.ID, cp.Name, cp.Deadline.Format(time.DateOnly), len(cp.Items), open)
				}
				return nil
			}
			cp, err := sys.Store.Campaign(c.Context(), campaign)
			if err != nil {
				return err
			}
			fmt.Fprintln(tw, "ITEM\tKIND\tPERSON\tREVIEWER\tDECISION\tWHAT")
			for _, it := range cp.Items {
				if reviewer == "" || it.Reviewer == reviewer {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, it.Kind, it.PersonID, it.Reviewer, it.Decision, it.What)
				}
			}
			return nil
		}}
	list.Flags().StringVar(&campaign, "campaign", "", "campaign ID")
	list.Flags().StringVar(&reviewer, "reviewer", "", "only this reviewer's items")
	var item, decision string
	answer := &cobra.Command{Use: "answer", Short: "Confirm or revoke one item (as the reviewer, from $AORTAGW_ACTOR or $USER)",
		RunE: func(c *cobra.Command, _ []string) error {
			sys, done, err := open(c.Context())
			if err != nil {
				return err
			}
			defer done()
			if err := sys.Engine.AnswerAttestation(c.Context(), campaign, item, iam.Decision(decision), cliActor()); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "item %s: %s\n", item, decision)
			return nil
		}}
	answer.Flags().StringVar(&campaign, "campaign", "", "campaign ID")
	answer.Flags().StringVar(&item, "item", "", "item ID")
	answer.Flags().StringVar(&decision, "decision", "", "confirm or revoke")
	at.AddCommand(start, list, answer)
	return at
}

func newIAMID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cliActor names the administrator for the audit log.
func cliActor() string {
	if a := os.Getenv("AORTAGW_ACTOR"); a != "" {
		return a
	}
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}

func parseDay(s string) (time.Time, error) {
	d, err := time.ParseInLocation(time.DateOnly, s, time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: date must be YYYY-MM-DD (value=%q)", iam.ErrInvalid, s)
	}
	return d, nil
}

func pendingNote(id string) string {
	if id == "" {
		return ""
	}
	return " — BLOCKED by the removal threshold, approve with `aortagw iam approve-import " + id + "`"
}

func printRun(w io.Writer, rr *iam.RunResult) {
	mode := "applied"
	if rr.DryRun {
		mode = "preview (dry run)"
	}
	counts := rr.Plan.Counts()
	var parts []string
	for _, t := range iam.ActionTypes {
		if counts[t] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, counts[t]))
		}
	}
	fmt.Fprintf(w, "plan %s: %s; deviations %d\n", mode, orNone(strings.Join(parts, ", ")), len(rr.Plan.Deviations))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tACTION\tPERSON\tREF\tPERMISSION\tORIGIN\tRESULT")
	for _, o := range rr.Outcomes {
		res := "ok"
		switch {
		case o.Err != "":
			res = "FAILED: " + o.Err
		case o.Result.NoChange:
			res = "no change"
		}
		ref := o.Action.Ref
		if ref == "" {
			ref = o.Result.Ref
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Action.Target, o.Action.Type, o.Action.PersonID, ref, o.Action.Permission, o.Action.Origin, res)
	}
	for _, a := range rr.Blocked {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Target, a.Type, a.PersonID, a.Ref, a.Permission, a.Origin, "BLOCKED by output threshold (--allow "+string(a.Type)+")")
	}
	_ = tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "nothing to do"
	}
	return s
}

func writeReport(w io.Writer, rep *iam.Report, format string) error {
	sort.SliceStable(rep.Deviations, func(i, j int) bool { return rep.Deviations[i].Type < rep.Deviations[j].Type })
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"kind", "type", "target", "person", "ref", "permission", "detail", "fix", "resolution", "resolved_by", "key"})
		for _, d := range rep.Deviations {
			fix, res, by := "", "", ""
			if d.Fix != nil {
				fix = string(d.Fix.Type)
			}
			if d.Resolution != nil {
				res, by = string(d.Resolution.Action), d.Resolution.By
			}
			_ = cw.Write([]string{"deviation", string(d.Type), d.Target, d.PersonID, d.Ref, d.Permission, d.Detail, fix, res, by, d.Key})
		}
		for _, b := range rep.Blocked {
			_ = cw.Write([]string{"blocked-person", "missing-fields", b.Source, b.ID, "", "", strings.Join(b.Missing, ";"), "", "", "", ""})
		}
		for _, p := range rep.Pending {
			_ = cw.Write([]string{"pending-import", "source-threshold", p.Source, "", p.ID, "", p.Reason, "approve-import", "", "", p.ID})
		}
		for _, d := range rep.Due {
			_ = cw.Write([]string{"due", "confirmation", d.Target, d.PersonID, d.Ref, "", d.What + " (due " + d.DueAt.Format(time.DateOnly) + ")", "", "", "", ""})
		}
		cw.Flush()
		return cw.Error()
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "IST-SOLL report %s\n\n", rep.At.Format(time.RFC3339))
		fmt.Fprintln(tw, "TYPE\tTARGET\tPERSON\tREF\tPERMISSION\tFIX\tRESOLUTION\tDETAIL")
		for _, d := range rep.Deviations {
			fix, res := "-", "-"
			if d.Fix != nil {
				fix = string(d.Fix.Type)
				if d.Auto {
					fix += " (auto)"
				}
			}
			if d.Resolution != nil {
				res = string(d.Resolution.Action) + " by " + d.Resolution.By
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Type, d.Target, d.PersonID, d.Ref, d.Permission, fix, res, d.Detail)
		}
		if len(rep.Blocked) > 0 {
			fmt.Fprintln(tw, "\nBLOCKED PERSON\tSOURCE\tMISSING")
			for _, b := range rep.Blocked {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", b.ID, b.Source, strings.Join(b.Missing, ", "))
			}
		}
		if len(rep.Pending) > 0 {
			fmt.Fprintln(tw, "\nPENDING IMPORT\tSOURCE\tREASON")
			for _, p := range rep.Pending {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Source, p.Reason)
			}
		}
		if len(rep.Due) > 0 {
			fmt.Fprintln(tw, "\nDUE\tTARGET\tREF\tSINCE\tWHAT")
			for _, d := range rep.Due {
				fmt.Fprintf(tw, "confirmation\t%s\t%s\t%s\t%s\n", d.Target, d.Ref, d.DueAt.Format(time.DateOnly), d.What)
			}
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: format must be table, json or csv (value=%q)", iam.ErrInvalid, format)
}
