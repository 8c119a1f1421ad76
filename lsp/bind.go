package lsp

import (
	"context"
	"fmt"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/tokens"
)

// bundle is the verified token set of one message.
type bundle struct {
	res                 *tokens.BundleResult
	ura                 string
	enrID, mdtID, trxID string
	author              string
}

// verifyTokens sorts the assertions of the zim Security header by type and
// hands them, with the values of the HL7 message and the TLS client's URA,
// to the tokens validator: each token verified strictly (signature, chain,
// CRL, validity, audience, attributes), the value bindings of aorta-uzi.md
// section 7 (URA, BSN rule, context, interaction and message id, author or
// mandate, peer URA), and only then the transaction token's replay check.
func (s *Simulator) verifyTokens(ctx context.Context, raw [][]byte, msg *hl7.Message, p *peer) (*bundle, *simError) {
	if len(raw) > 3 {
		return nil, tokenFault(fmt.Errorf("%w (tokens=%d)", tokens.ErrTokenCount, len(raw)))
	}
	var tb tokens.Bundle
	for _, r := range raw {
		var slot *[]byte
		switch sniff(r) {
		case tokens.TypeTransaction:
			slot = &tb.Transaction
		case tokens.TypeMandate:
			slot = &tb.Mandate
		default:
			slot = &tb.Enrolment
		}
		if *slot != nil {
			return nil, tokenFault(fmt.Errorf("%w: two tokens of one type", tokens.ErrTokenCount))
		}
		*slot = r
	}
	m := tokens.Binding{
		URA: msg.AuthorURA, BSN: msg.BSN, InteractionID: msg.InteractionID,
		MessageIDRoot: msg.MessageIDRoot, MessageIDExt: msg.MessageIDExt, PeerURA: p.ura,
	}
	author := msg.AuthorDevice
	if msg.AuthorUZI != "" {
		m.AuthorNameID = msg.AuthorUZI + ":" + msg.AuthorRole
		author = m.AuthorNameID
	}
	if msg.OverseerUZI != "" {
		m.OverseerNameID = msg.OverseerUZI + ":" + msg.OverseerRole
	}
	res, err := s.cfg.Verifier.VerifyBundle(ctx, tb, m)
	if err != nil {
		return nil, tokenFault(err)
	}
	b := &bundle{res: res, ura: res.Transaction.Transaction.URA, trxID: res.Transaction.ID, author: author}
	if res.Enrolment != nil {
		b.enrID = res.Enrolment.ID
	}
	if res.Mandate != nil {
		b.mdtID = res.Mandate.ID
	}
	return b, nil
}
