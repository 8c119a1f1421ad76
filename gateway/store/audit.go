package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// AuditLog is the append-only, hash-chained audit trail.
type AuditLog interface {
	// Append adds a record to the end of the one chain shared by all replicas
	// and returns it with Seq, Time (if it was zero), PrevHash and Hash set.
	Append(ctx context.Context, r AuditRecord) (AuditRecord, error)
	// AuditRecords returns records matching f in sequence order.
	AuditRecords(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// VerifyChain recomputes the whole chain. When it finds a change,
	// deletion, insertion or reordering it returns a Report listing where,
	// together with an error matching ErrChainBroken.
	VerifyChain(ctx context.Context) (Report, error)
}

// AuditVersion is the version of the canonical record encoding written now.
const AuditVersion = 1

// Audit record kinds written by the store itself; the gateway adds its own
// (for example "message" and "token.minted").
const (
	AuditTokenRegistered = "token.registered"
	AuditTokenRevoked    = "token.revoked"
	AuditMandatesRevoked = "mandates.revoked"
	AuditActorBlocked    = "actor.blocked"
	AuditActorUnblocked  = "actor.unblocked"
)

// AuditRecord is one entry of the audit trail.
type AuditRecord struct {
	Seq         int64     `json:"seq"`
	Version     int       `json:"version"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`            // what happened: "message", "token.minted", ...
	Giver       string    `json:"giver,omitempty"` // mandate giver (UZI:role)
	Actor       string    `json:"actor,omitempty"` // mandated person or system, or "system"
	BSN         string    `json:"bsn,omitempty"`   // patient
	Interaction string    `json:"interaction,omitempty"`
	MessageID   string    `json:"message_id,omitempty"`
	TokenIDs    []string  `json:"token_ids,omitempty"`
	TriggerID   string    `json:"trigger_id,omitempty"`
	Outcome     string    `json:"outcome"` // "ok", or a fault code
	// Details is a JSON object with anything else (never a token body or a
	// PIN). It is stored compacted and hashed byte for byte.
	Details  json.RawMessage `json:"details,omitempty"`
	PrevHash []byte          `json:"prev_hash"`
	Hash     []byte          `json:"hash"`
}

// AuditFilter selects records. Zero fields do not filter.
type AuditFilter struct {
	BSN      string
	From, To time.Time // inclusive From, exclusive To
	AfterSeq int64
	Limit    int // default 10000
}

// Report is the result of VerifyChain.
type Report struct {
	Records  int64          // records checked
	HeadSeq  int64          // sequence number in the chain head
	HeadHash string         // hex hash in the chain head: note it somewhere safe to detect a rewritten log later
	OK       bool           // no problem found
	Problems []ChainProblem // at most 100, in sequence order
}

// ChainProblem says where the chain is broken.
type ChainProblem struct {
	Seq    int64
	Kind   string // "hash-mismatch", "prev-mismatch", "gap", "head-mismatch", "unknown-version"
	Detail string
}

// String formats the problem for logs and the CLI.
func (p ChainProblem) String() string {
	return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Detail)
}

var genesisHash = make([]byte, sha256.Size)

// canonical is the versioned encoding the hash covers. Version 1:
//
//	"aortagw-audit\x00" | u32 version | u64 seq | i64 unix-micro time |
//	str kind | str giver | str actor | str bsn | str interaction | str message_id |
//	u32 n | n × str token_id | str trigger_id | str outcome | str details | 32 bytes prev_hash
//
// where str is a u32 big-endian length followed by the UTF-8 bytes. Length
// prefixes make the encoding injective: no two records share an encoding.
// hash = SHA-256(canonical).
func canonical(r *AuditRecord) []byte {
	var b bytes.Buffer
	b.WriteString("aortagw-audit\x00")
	u32 := func(v uint32) { _ = binary.Write(&b, binary.BigEndian, v) }
	str := func(s string) { u32(uint32(len(s))); b.WriteString(s) } // #nosec G115 -- bounded by DB text
	u32(uint32(r.Version))                                          // #nosec G115
	_ = binary.Write(&b, binary.BigEndian, uint64(r.Seq))           // #nosec G115 -- seq >= 1
	_ = binary.Write(&b, binary.BigEndian, r.Time.UnixMicro())
	str(r.Kind)
	str(r.Giver)
	str(r.Actor)
	str(r.BSN)
	str(r.Interaction)
	str(r.MessageID)
	u32(uint32(len(r.TokenIDs))) // #nosec G115
	for _, id := range r.TokenIDs {
		str(id)
	}
	str(r.TriggerID)
	str(r.Outcome)
	str(string(r.Details))
	b.Write(r.PrevHash)
	return b.Bytes()
}

func recordHash(r *AuditRecord) []byte {
	h := sha256.Sum256(canonical(r))
	return h[:]
}

// normalise checks a record and brings it into the form that is stored.
func (s *sqlStore) normalise(r *AuditRecord) error {
	if r.Kind == "" || r.Outcome == "" {
		return fmt.Errorf("%w: audit record needs kind and outcome", ErrInvalid)
	}
	if r.Time.IsZero() {
		r.Time = s.opts.Now()
	}
	r.Time = micro(r.Time)
	r.Version = AuditVersion
	if len(r.Details) == 0 {
		r.Details = json.RawMessage("{}")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, r.Details); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return fmt.Errorf("%w: audit details must be a JSON object", ErrInvalid)
	}
	r.Details = json.RawMessage(buf.Bytes())
	if r.TokenIDs == nil {
		r.TokenIDs = []string{}
	}
	return nil
}

// Append adds r at the end of the chain. On PostgreSQL the chain head row is
// locked with SELECT ... FOR UPDATE, on SQLite the transaction holds the write
// lock: either way the read of the head, the insert and the head update are
// one serialised step across every replica.
//
// Group commit: concurrent Appends of one Store are handed to one appender
// goroutine, which writes everything waiting in one transaction (one fsync)
// and then answers each caller. Append still returns only after its own
// record committed; a lone caller pays exactly one transaction. If the
// caller's ctx ends while the batch is being written, Append returns ctx.Err()
// and the record may or may not have been committed (as with any database
// call cancelled at commit).
func (s *sqlStore) Append(ctx context.Context, r AuditRecord) (AuditRecord, error) {
	if err := s.normalise(&r); err != nil {
		return AuditRecord{}, err
	}
	start := time.Now()
	req := &appendReq{rec: r, done: make(chan error, 1)}
	select {
	case s.appendCh <- req:
	case <-s.quit:
		return AuditRecord{}, ErrClosed
	case <-ctx.Done():
		return AuditRecord{}, ctx.Err()
	}
	select {
	case err := <-req.done:
		if err != nil {
			return AuditRecord{}, err
		}
	case <-ctx.Done():
		return AuditRecord{}, ctx.Err()
	}
	if s.metrics != nil {
		s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	}
	return req.rec, nil
}

type appendReq struct {
	rec  AuditRecord
	done chan error // buffered: the appender never blocks on a caller that left
}

// maxAppendBatch bounds one group commit.
const maxAppendBatch = 256

// appender is the one goroutine that writes audit appends; it exits when
// quit is closed, after answering what it already took.
func (s *sqlStore) appender() {
	defer s.wg.Done()
	batch := make([]*appendReq, 0, maxAppendBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.appendCh:
			batch = append(batch, r)
		case <-s.quit:
			return
		}
	fill:
		for len(batch) < maxAppendBatch {
			select {
			case r := <-s.appendCh:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.writeBatch(batch)
	}
}

func (s *sqlStore) writeBatch(batch []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]*AuditRecord, len(batch))
	for i, r := range batch {
		recs[i] = &r.rec
	}
	err := s.b.tx(ctx, func(q querier) error { return s.appendTx(ctx, q, recs...) })
	if err != nil && len(batch) > 1 {
		// Nothing of the batch committed: retry one by one so one failing
		// record does not fail the others.
		for _, r := range batch {
			r.done <- s.b.tx(ctx, func(q querier) error { return s.appendTx(ctx, q, &r.rec) })
		}
		return
	}
	for _, r := range batch {
		r.done <- err
	}
}

// appendTx appends records inside the caller's transaction (records already
// normalised): it locks the head, chains the records, inserts them with one
// multi-row INSERT and moves the head once, so a group commit of n records
// costs the same round trips as one.
func (s *sqlStore) appendTx(ctx context.Context, q querier, recs ...*AuditRecord) error {
	lock := ""
	if s.d == dialectPostgres {
		lock = " FOR UPDATE"
	}
	var last int64
	var prev []byte
	if err := q.queryRow(ctx, "SELECT last_seq, last_hash FROM audit_head WHERE id = 1"+lock).Scan(&last, &prev); err != nil {
		return fmt.Errorf("store: audit head: %w", err)
	}
	const cols = 15
	var sb strings.Builder
	sb.WriteString(`INSERT INTO audit_log (seq, version, at, kind, giver, actor, bsn, interaction,
		message_id, token_ids, trigger_id, outcome, details, prev_hash, hash) VALUES `)
	args := make([]any, 0, cols*len(recs))
	for i, r := range recs {
		r.Seq = last + 1
		r.PrevHash = prev
		r.Hash = recordHash(r)
		last, prev = r.Seq, r.Hash
		ids, err := json.Marshal(r.TokenIDs)
		if err != nil {
			return fmt.Errorf("store: audit token ids: %w", err)
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(")
		for c := range cols {
			if c > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "$%d", i*cols+c+1)
		}
		sb.WriteString(")")
		args = append(args, r.Seq, r.Version, s.d.ts(r.Time), r.Kind, r.Giver, r.Actor, r.BSN, r.Interaction,
			r.MessageID, string(ids), r.TriggerID, r.Outcome, string(r.Details), r.PrevHash, r.Hash)
	}
	if _, err := q.exec(ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("store: audit insert (seq=%d..%d): %w", recs[0].Seq, last, err)
	}
	if _, err := q.exec(ctx, "UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1", last, prev); err != nil {
		return fmt.Errorf("store: audit head update: %w", err)
	}
	return nil
}

// auditInTx appends a store-generated record in the caller's transaction, so
// the change and its audit record commit together or not at all.
func (s *sqlStore) auditInTx(ctx context.Context, q querier, r AuditRecord) error {
	if err := s.normalise(&r); err != nil {
		return err
	}
	return s.appendTx(ctx, q, &r)
}

const auditCols = `seq, version, at, kind, giver, actor, bsn, interaction, message_id, token_ids, trigger_id,
	outcome, details, prev_hash, hash`

func scanAudit(r scanner) (AuditRecord, error) {
	var a AuditRecord
	var ids, details string
	if err := r.Scan(&a.Seq, &a.Version, tsScan{&a.Time}, &a.Kind, &a.Giver, &a.Actor, &a.BSN, &a.Interaction,
		&a.MessageID, &ids, &a.TriggerID, &a.Outcome, &details, &a.PrevHash, &a.Hash); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(ids), &a.TokenIDs); err != nil {
		// Keep the record: VerifyChain reports it as a hash mismatch.
		a.TokenIDs = []string{"<unparsable: " + ids + ">"}
	}
	a.Details = json.RawMessage(details)
	return a, nil
}

func (s *sqlStore) AuditRecords(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 {
		f.Limit = 10000
	}
	var c conds
	c.add("seq > $%d", f.AfterSeq)
	if f.BSN != "" {
		c.add("bsn = $%d", f.BSN)
	}
	if !f.From.IsZero() {
		c.add("at >= $%d", s.d.ts(f.From))
	}
	if !f.To.IsZero() {
		c.add("at < $%d", s.d.ts(f.To))
	}
	rows, err := s.b.read().query(ctx, `SELECT `+auditCols+` FROM audit_log WHERE `+c.sql()+
		fmt.Sprintf(` ORDER BY seq LIMIT $%d`, c.arg(f.Limit)), c.args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit records: %w", err)
	}
	out, err := collect(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("store: audit records: %w", err)
	}
	return out, nil
}

// VerifyChain walks the log in sequence order in pages, inside one read-only
// snapshot (REPEATABLE READ on PostgreSQL), so appends running meanwhile are
// simply not part of what is checked. It checks for each record
// that seq follows its predecessor (a gap is a deletion or an insertion with
// renumbering), that prev_hash equals the predecessor's hash (reordering,
// deletion) and that hash matches the recomputed canonical hash (any change of
// any field). Finally the head row must point at the last record (truncation
// of the tail, or records added without going through Append).
func (s *sqlStore) VerifyChain(ctx context.Context) (Report, error) {
	var rep Report
	var headHash []byte
	err := s.readTx(ctx, true, func(q querier) error {
		if err := q.queryRow(ctx, "SELECT last_seq, last_hash FROM audit_head WHERE id = 1").Scan(&rep.HeadSeq, &headHash); err != nil {
			return fmt.Errorf("store: audit head: %w", err)
		}
		rep.HeadHash = hex.EncodeToString(headHash)
		problem := func(seq int64, kind, format string, args ...any) {
			if len(rep.Problems) < 100 {
				rep.Problems = append(rep.Problems, ChainProblem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
			}
		}
		prevSeq, prevHash := int64(0), genesisHash
		const page = 2000
		for {
			rows, err := q.query(ctx, `SELECT `+auditCols+` FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`,
				prevSeq, max(rep.HeadSeq, prevSeq+page), page)
			if err != nil {
				return fmt.Errorf("store: verify chain: %w", err)
			}
			n := 0
			for rows.Next() {
				a, err := scanAudit(rows)
				if err != nil {
					rows.Close()
					return fmt.Errorf("store: verify chain: %w", err)
				}
				n++
				rep.Records++
				if a.Seq != prevSeq+1 {
					problem(a.Seq, "gap", "expected seq %d after %d (records deleted or inserted)", prevSeq+1, prevSeq)
				}
				if !bytes.Equal(a.PrevHash, prevHash) {
					problem(a.Seq, "prev-mismatch", "prev_hash does not match the hash of seq %d (records deleted, inserted or reordered)", prevSeq)
				}
				if a.Version != 1 {
					problem(a.Seq, "unknown-version", "encoding version %d", a.Version)
				} else if want := recordHash(&a); !bytes.Equal(want, a.Hash) {
					problem(a.Seq, "hash-mismatch", "record content changed (stored %x, computed %x)", short(a.Hash), short(want))
				}
				prevSeq, prevHash = a.Seq, a.Hash
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return fmt.Errorf("store: verify chain: %w", err)
			}
			if n == 0 {
				break
			}
		}
		if prevSeq != rep.HeadSeq || !bytes.Equal(prevHash, headHash) {
			problem(rep.HeadSeq, "head-mismatch", "chain head says seq %d, log ends at seq %d (tail truncated or head altered)", rep.HeadSeq, prevSeq)
		}
		// Records beyond the head that were not appended through Append.
		var beyond int64
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM audit_log WHERE seq > $1", prevSeq).Scan(&beyond); err != nil {
			return fmt.Errorf("store: verify chain: %w", err)
		}
		if beyond > 0 {
			problem(prevSeq+1, "gap", "%d records beyond the chain", beyond)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.OK = len(rep.Problems) == 0
	if !rep.OK {
		return rep, fmt.Errorf("%w: %d problem(s), first at %s", ErrChainBroken, len(rep.Problems), rep.Problems[0])
	}
	return rep, nil
}

func short(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}
