package tokenizer

import (
	"encoding/json"
	"fmt"
)

// postProcessor adds the special tokens around one text or a pair
// (tokenizer.json "post_processor").
type postProcessor interface {
	// added is how many tokens it adds to one text (pair false) or a pair.
	added(pair bool) int
	process(a, b *Encoding) *Encoding
	// check verifies its tokens against the tokenizer's vocabulary.
	check(t *Tokenizer) error
}

// piece is one element of a template: a special token, or sequence A or B,
// with its token type id.
type piece struct {
	special string
	seq     string // "A" or "B" for a sequence
	typeID  int64
}

// template is TemplateProcessing: the pieces of one text and of a pair.
// BertProcessing and RobertaProcessing are templates too.
type template struct {
	single, pair []piece
	// specials maps a special token's name to its ids and tokens.
	specials map[string]special
	field    string
	// zeroTypes gives every token type id 0, with or without special
	// tokens (RobertaProcessing).
	zeroTypes bool
}

type special struct {
	IDs    []int64  `json:"ids"`
	Tokens []string `json:"tokens"`
}

// noPost adds nothing (no post_processor, or ByteLevel's, which only
// moves offsets).
type noPost struct{}

func (noPost) added(bool) int         { return 0 }
func (noPost) check(*Tokenizer) error { return nil }
func (noPost) process(a, b *Encoding) *Encoding {
	if b == nil {
		return a
	}
	return concat(a, b)
}

func parsePostProcessor(r json.RawMessage, field string) (postProcessor, error) {
	if isNull(r) {
		return noPost{}, nil
	}
	typ, err := typeOf(r, field)
	if err != nil {
		return nil, err
	}
	bad := func(err error) error { return fmt.Errorf("%w: %s: %v", ErrFormat, field, err) }
	switch typ {
	case "ByteLevel":
		return noPost{}, nil
	case "BertProcessing", "RobertaProcessing":
		// "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]
		v := struct {
			Sep [2]json.RawMessage `json:"sep"`
			Cls [2]json.RawMessage `json:"cls"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		var sep, cls string
		var sepID, clsID int64
		for _, f := range []struct {
			raw [2]json.RawMessage
			tok *string
			id  *int64
		}{{v.Sep, &sep, &sepID}, {v.Cls, &cls, &clsID}} {
			if json.Unmarshal(f.raw[0], f.tok) != nil || json.Unmarshal(f.raw[1], f.id) != nil || *f.tok == "" {
				return nil, fmt.Errorf("%w: %s: sep and cls are [token, id]", ErrFormat, field)
			}
		}
		t := &template{field: field, specials: map[string]special{
			sep: {IDs: []int64{sepID}, Tokens: []string{sep}},
			cls: {IDs: []int64{clsID}, Tokens: []string{cls}},
		}}
		S := func(name string, typ int64) piece { return piece{special: name, typeID: typ} }
		Q := func(seq string, typ int64) piece { return piece{seq: seq, typeID: typ} }
		t.single = []piece{S(cls, 0), Q("A", 0), S(sep, 0)}
		if typ == "BertProcessing" {
			t.pair = []piece{S(cls, 0), Q("A", 0), S(sep, 0), Q("B", 1), S(sep, 1)}
		} else {
			// RoBERTa has one token type: <s> A </s></s> B </s>
			t.pair = []piece{S(cls, 0), Q("A", 0), S(sep, 0), S(sep, 0), Q("B", 0), S(sep, 0)}
			t.zeroTypes = true
		}
		return t, nil
	case "TemplateProcessing":
		v := struct {
			Single        []json.RawMessage  `json:"single"`
			Pair          []json.RawMessage  `json:"pair"`
			SpecialTokens map[string]special `json:"special_tokens"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		t := &template{field: field, specials: v.SpecialTokens}
		for _, part := range []struct {
			name string
			raw  []json.RawMessage
			dst  *[]piece
		}{{"single", v.Single, &t.single}, {"pair", v.Pair, &t.pair}} {
			for i, raw := range part.raw {
				var p struct {
					SpecialToken *struct {
						ID     string `json:"id"`
						TypeID int64  `json:"type_id"`
					} `json:"SpecialToken"`
					Sequence *struct {
						ID     string `json:"id"`
						TypeID int64  `json:"type_id"`
					} `json:"Sequence"`
				}
				if err := json.Unmarshal(raw, &p); err != nil {
					return nil, fmt.Errorf("%w: %s.%s[%d]: %v", ErrFormat, field, part.name, i, err)
				}
				switch {
				case p.SpecialToken != nil:
					if _, ok := t.specials[p.SpecialToken.ID]; !ok {
						return nil, fmt.Errorf("%w: %s.%s[%d]: special token %q is not in special_tokens", ErrFormat, field, part.name, i, p.SpecialToken.ID)
					}
					*part.dst = append(*part.dst, piece{special: p.SpecialToken.ID, typeID: p.SpecialToken.TypeID})
				case p.Sequence != nil && (p.Sequence.ID == "A" || p.Sequence.ID == "B" && part.name == "pair"):
					*part.dst = append(*part.dst, piece{seq: p.Sequence.ID, typeID: p.Sequence.TypeID})
				default:
					return nil, fmt.Errorf("%w: %s.%s[%d]: want a SpecialToken or a Sequence A (or B in pair)", ErrFormat, field, part.name, i)
				}
			}
		}
		return t, nil
	case "Sequence":
		v := struct {
			Processors []json.RawMessage `json:"processors"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, bad(err)
		}
		// only ByteLevel's (offsets) and one that adds tokens
		var out postProcessor = noPost{}
		for i, sub := range v.Processors {
			p, err := parsePostProcessor(sub, fmt.Sprintf("%s.processors[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if _, none := p.(noPost); none {
				continue
			}
			if _, none := out.(noPost); !none {
				return nil, fmt.Errorf("%w: %s: more than one processor adds tokens", ErrFormat, field)
			}
			out = p
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s.type %q is not supported (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence are)", ErrFormat, field, typ)
}

func (t *template) added(pair bool) int {
	ps := t.single
	if pair {
		ps = t.pair
	}
	n := 0
	for _, p := range ps {
		if p.seq == "" {
			n += len(t.specials[p.special].IDs)
		}
	}
	return n
}

// check fills in the ids of BertProcessing's and RobertaProcessing's
// tokens from the vocabulary when the file's ids are missing, and checks
// every special token's ids are in it.
func (t *template) check(tok *Tokenizer) error {
	for name, s := range t.specials {
		if len(s.IDs) == 0 {
			return fmt.Errorf("%w: %s: special token %q has no ids", ErrFormat, t.field, name)
		}
		for _, id := range s.IDs {
			if id < 0 || int(id) >= tok.size {
				return fmt.Errorf("%w: %s: special token %q has id %d, outside the vocabulary (%d)", ErrFormat, t.field, name, id, tok.size)
			}
		}
	}
	return nil
}

func (t *template) process(a, b *Encoding) *Encoding {
	ps := t.single
	if b != nil {
		if len(t.pair) == 0 {
			return concat(a, b)
		}
		ps = t.pair
	}
	out := &Encoding{}
	for _, p := range ps {
		switch p.seq {
		case "A", "B":
			e := a
			if p.seq == "B" {
				e = b
			}
			for i := range e.IDs {
				out.add(e.IDs[i], e.Tokens[i], p.typeID, e.Special[i]) // the template's type id
			}
		default:
			s := t.specials[p.special]
			for i, id := range s.IDs {
				tok := p.special
				if i < len(s.Tokens) {
					tok = s.Tokens[i]
				}
				out.add(id, tok, p.typeID, true)
			}
		}
	}
	return out
}
