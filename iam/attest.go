package iam

import (
	"context"
	"fmt"
	"time"
)

// Decision is a reviewer's answer to an attestation item.
type Decision string

// Decisions.
const (
	DecisionNone    Decision = ""
	DecisionConfirm Decision = "confirm"
	DecisionRevoke  Decision = "revoke"
)

// AttestItem is one thing a manager must confirm or revoke: a manual grant
// or an employment (contract).
type AttestItem struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"` // grant | employment
	PersonID   string    `json:"personId"`
	GrantID    string    `json:"grantId,omitempty"`
	ContractID string    `json:"contractId,omitempty"`
	What       string    `json:"what"`
	Reviewer   string    `json:"reviewer"`
	Decision   Decision  `json:"decision,omitempty"`
	By         string    `json:"by,omitempty"`
	At         time.Time `json:"at,omitzero"`
}

// Campaign is an attestation campaign with a deadline.
type Campaign struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	CreatedBy string       `json:"createdBy"`
	CreatedAt time.Time    `json:"createdAt"`
	Deadline  time.Time    `json:"deadline"`
	Items     []AttestItem `json:"items"`
}

// StartCampaign creates a campaign over every active manual grant and every
// running employment; the reviewer is the contract's manager ("unassigned"
// when the source names none).
func (e *Engine) StartCampaign(ctx context.Context, name, by string, deadline time.Time) (Campaign, error) {
	now := e.now()
	if !deadline.After(now) {
		return Campaign{}, fmt.Errorf("%w: campaign deadline lies in the past (deadline=%s)", ErrInvalid, deadline.Format(time.DateOnly))
	}
	persons, err := e.persons(ctx)
	if err != nil {
		return Campaign{}, err
	}
	grants, err := e.store.Grants(ctx)
	if err != nil {
		return Campaign{}, err
	}
	c := Campaign{ID: e.newID(), Name: name, CreatedBy: by, CreatedAt: now, Deadline: deadline}
	manager := map[string]string{}
	for _, p := range persons {
		if p.Removed {
			continue
		}
		for _, ct := range p.Contracts {
			if !ct.ActiveAt(now) {
				continue
			}
			rv := ct.Manager
			if rv == "" {
				rv = "unassigned"
			}
			manager[p.ID] = rv
			c.Items = append(c.Items, AttestItem{ID: e.newID(), Kind: "employment", PersonID: p.ID, ContractID: ct.ID,
				What: fmt.Sprintf("%s works as %s at %s", p.Name(), ct.Function, ct.Department), Reviewer: rv})
		}
	}
	for _, g := range grants {
		if !g.ActiveAt(now) {
			continue
		}
		rv := manager[g.PersonID]
		if rv == "" {
			rv = "unassigned"
		}
		c.Items = append(c.Items, AttestItem{ID: e.newID(), Kind: "grant", PersonID: g.PersonID, GrantID: g.ID,
			What: fmt.Sprintf("manual grant %s (reason: %s, until %s)", g.Entitlement, g.Reason, g.Until.Format(time.DateOnly)), Reviewer: rv})
	}
	if err := e.store.SaveCampaign(ctx, c); err != nil {
		return Campaign{}, err
	}
	return c, e.store.Audit(ctx, AuditEvent{At: now, Actor: by, Action: "attest-start", Detail: fmt.Sprintf("campaign=%s items=%d deadline=%s", c.ID, len(c.Items), deadline.Format(time.DateOnly)), Outcome: "ok"})
}

// AnswerAttestation records a decision. Revoking a grant revokes it at once
// and propagates; revoking an employment becomes a deviation for HR.
func (e *Engine) AnswerAttestation(ctx context.Context, campaignID, itemID string, d Decision, by string) error {
	if d != DecisionConfirm && d != DecisionRevoke {
		return fmt.Errorf("%w: decision must be confirm or revoke (decision=%s)", ErrInvalid, d)
	}
	c, err := e.store.Campaign(ctx, campaignID)
	if err != nil {
		return err
	}
	now := e.now()
	if now.After(c.Deadline) {
		return fmt.Errorf("%w: campaign closed (campaign=%s)", ErrInvalid, campaignID)
	}
	for i := range c.Items {
		it := &c.Items[i]
		if it.ID != itemID {
			continue
		}
		if it.Reviewer != "unassigned" && it.Reviewer != by {
			return fmt.Errorf("%w: item belongs to another reviewer (item=%s reviewer=%s)", ErrInvalid, itemID, it.Reviewer)
		}
		it.Decision, it.By, it.At = d, by, now
		if err := e.store.SaveCampaign(ctx, c); err != nil {
			return err
		}
		if d == DecisionConfirm && it.Kind == "employment" {
			if err := e.confirmEmployment(ctx, it.PersonID); err != nil {
				return err
			}
		}
		if d == DecisionRevoke && it.Kind == "grant" {
			if err := e.store.RevokeGrant(ctx, it.GrantID, by, now); err != nil {
				return err
			}
			e.Notify(it.PersonID)
		}
		return e.store.Audit(ctx, AuditEvent{At: now, Actor: by, Action: "attest-" + string(d), PersonID: it.PersonID,
			Origin: string(OriginAttestation) + ":" + c.ID, Detail: it.What, Outcome: "ok"})
	}
	return fmt.Errorf("%w: attestation item (campaign=%s item=%s)", ErrNotFound, campaignID, itemID)
}

// attestationDeviations lists unanswered items past their deadline and
// revoked employments.
func attestationDeviations(cs []Campaign, now time.Time) []Deviation {
	var out []Deviation
	for _, c := range cs {
		for _, it := range c.Items {
			switch {
			case it.Decision == DecisionNone && now.After(c.Deadline):
				out = append(out, Deviation{Key: string(DevAttestationMissed) + "|" + c.ID + "|" + it.ID, Type: DevAttestationMissed,
					PersonID: it.PersonID, Detail: fmt.Sprintf("%s (reviewer %s, deadline %s)", it.What, it.Reviewer, c.Deadline.Format(time.DateOnly))})
			case it.Decision == DecisionRevoke && it.Kind == "employment":
				out = append(out, Deviation{Key: string(DevAttestationRevoke) + "|" + c.ID + "|" + it.ID, Type: DevAttestationRevoke,
					PersonID: it.PersonID, Detail: fmt.Sprintf("%s revoked by %s: correct the HR source", it.What, it.By)})
			}
		}
	}
	return out
}

// confirmEmployment passes a confirmed employment to every target that
// keeps periodic confirmations.
func (e *Engine) confirmEmployment(ctx context.Context, personID string) error {
	contribs, err := e.store.PersonContributions(ctx, personID)
	if err != nil || len(contribs) == 0 {
		return err
	}
	p := MergePersons(contribs, e.cfg.SourceOrder)[0]
	for _, t := range e.cfg.Targets {
		cf, ok := e.conns[t.Name].(Confirmer)
		if !ok {
			continue
		}
		if key := p.Field(t.corrField()); key != "" {
			if err := cf.ConfirmEmployment(ctx, key); err != nil {
				return fmt.Errorf("iam: confirm employment (target=%s person=%s): %w", t.Name, personID, err)
			}
		}
	}
	return nil
}
