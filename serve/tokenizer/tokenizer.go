package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

var (
	// ErrFormat is returned for a tokenizer.json this package cannot read
	// or does not support; the error names the field.
	ErrFormat = errors.New("tokenizer: bad tokenizer.json")
	// ErrInput is returned for text that cannot be tokenized (not UTF-8,
	// too long) or ids that cannot be decoded.
	ErrInput = errors.New("tokenizer: bad input")
)

// MaxTextBytes bounds one text given to Encode or EncodePair.
const MaxTextBytes = 1 << 20

// MaxFileBytes bounds a tokenizer.json read by Load.
const MaxFileBytes = 256 << 20

// Encoding is one tokenized text (or pair of texts) with its special
// tokens, before padding.
type Encoding struct {
	IDs     []int64
	TypeIDs []int64
	Tokens  []string
	// Special marks the tokens the post-processor added ([CLS], [SEP]).
	Special []bool
}

// Len is the number of tokens.
func (e *Encoding) Len() int { return len(e.IDs) }

func (e *Encoding) add(id int64, tok string, typ int64, special bool) {
	e.IDs = append(e.IDs, id)
	e.Tokens = append(e.Tokens, tok)
	e.TypeIDs = append(e.TypeIDs, typ)
	e.Special = append(e.Special, special)
}

// truncate keeps n tokens: the first n, or the last n when left.
func (e *Encoding) truncate(n int, left bool) {
	if n >= len(e.IDs) {
		return
	}
	if left {
		k := len(e.IDs) - n
		e.IDs, e.TypeIDs, e.Tokens, e.Special = e.IDs[k:], e.TypeIDs[k:], e.Tokens[k:], e.Special[k:]
		return
	}
	e.IDs, e.TypeIDs, e.Tokens, e.Special = e.IDs[:n], e.TypeIDs[:n], e.Tokens[:n], e.Special[:n]
}

// Truncation is how long encodings are cut (tokenizer.json "truncation").
type Truncation struct {
	// MaxLength counts the special tokens too.
	MaxLength int
	// Strategy is "longest_first" (the default), "only_first" or
	// "only_second" (of a pair).
	Strategy string
	// Left cuts the start instead of the end.
	Left bool
}

// Padding is how a batch of encodings is padded (tokenizer.json
// "padding").
type Padding struct {
	// Length pads every encoding to this length; 0 pads to the batch's
	// longest.
	Length int
	// Multiple rounds the padded length up to a multiple of it (0 or 1:
	// none).
	Multiple  int
	ID        int64
	TypeID    int64
	Token     string
	Left      bool
	isDefault bool
}

// Tokenizer is a loaded tokenizer.json. It is immutable and safe for
// concurrent use.
type Tokenizer struct {
	added []addedToken
	// addedFirst marks the first bytes of the added tokens.
	addedFirst [256]bool
	normalizer normalizer
	pre        preTokenizer
	model      model
	post       postProcessor
	decoder    decoder
	// decoderErr is why the decoder is not supported (Decode fails with
	// it).
	decoderErr error
	// Truncation and Padding are tokenizer.json's (nil when it has none);
	// Options override them per call.
	Truncation *Truncation
	Padding    Padding
	// vocab size: the largest id + 1 of the model and the added tokens
	size int
	// idToken maps ids to tokens (the model's and the added ones).
	idToken map[int64]string
	special map[int64]bool
}

type addedToken struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type fileJSON struct {
	Truncation *struct {
		MaxLength int    `json:"max_length"`
		Strategy  string `json:"strategy"`
		Direction string `json:"direction"`
	} `json:"truncation"`
	Padding *struct {
		Strategy        json.RawMessage `json:"strategy"`
		Direction       string          `json:"direction"`
		PadToMultipleOf *int            `json:"pad_to_multiple_of"`
		PadID           int64           `json:"pad_id"`
		PadTypeID       int64           `json:"pad_type_id"`
		PadToken        string          `json:"pad_token"`
	} `json:"padding"`
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

// Load reads a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is not a regular file of at most %d bytes", ErrFormat, path, MaxFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// isNull reports whether a JSON value is absent or null.
func isNull(r json.RawMessage) bool {
	s := strings.TrimSpace(string(r))
	return s == "" || s == "null"
}

// typeOf reads the "type" of a component.
func typeOf(r json.RawMessage, field string) (string, error) {
	var v struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(r, &v); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
	}
	return v.Type, nil
}

// Parse reads the contents of a tokenizer.json.
func Parse(b []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("%w: model: missing", ErrFormat)
	}
	t := &Tokenizer{idToken: map[int64]string{}, special: map[int64]bool{}}
	var err error
	if t.model, err = parseModel(f.Model); err != nil {
		return nil, err
	}
	if t.normalizer, err = parseNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.post, err = parsePostProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, err
	}
	t.decoder, t.decoderErr = parseDecoder(f.Decoder, "decoder")
	for id, tok := range t.model.tokens() {
		t.idToken[int64(id)] = tok
		t.size = max(t.size, id+1)
	}
	for i, a := range f.AddedTokens {
		if a.Content == "" || a.ID < 0 {
			return nil, fmt.Errorf("%w: added_tokens[%d]: empty content or negative id", ErrFormat, i)
		}
		if !utf8.ValidString(a.Content) {
			return nil, fmt.Errorf("%w: added_tokens[%d]: content is not UTF-8", ErrFormat, i)
		}
		t.added = append(t.added, a)
		t.addedFirst[a.Content[0]] = true
		t.idToken[a.ID] = a.Content
		t.special[a.ID] = t.special[a.ID] || a.Special
		t.size = max(t.size, int(a.ID)+1)
	}
	// longest first, so that "[SEP]x" never matches a shorter token that
	// starts the same way
	slices.SortStableFunc(t.added, func(a, b addedToken) int { return len(b.Content) - len(a.Content) })
	if err := t.post.check(t); err != nil {
		return nil, err
	}
	if tr := f.Truncation; tr != nil {
		t.Truncation = &Truncation{MaxLength: tr.MaxLength}
		switch tr.Strategy {
		case "", "LongestFirst":
			t.Truncation.Strategy = "longest_first"
		case "OnlyFirst":
			t.Truncation.Strategy = "only_first"
		case "OnlySecond":
			t.Truncation.Strategy = "only_second"
		default:
			return nil, fmt.Errorf("%w: truncation.strategy %q", ErrFormat, tr.Strategy)
		}
		t.Truncation.Left = tr.Direction == "Left"
		if tr.MaxLength <= 0 {
			return nil, fmt.Errorf("%w: truncation.max_length %d", ErrFormat, tr.MaxLength)
		}
	}
	t.Padding = Padding{ID: t.defaultPadID(), isDefault: true}
	if p := f.Padding; p != nil {
		t.Padding = Padding{ID: p.PadID, TypeID: p.PadTypeID, Token: p.PadToken, Left: p.Direction == "Left"}
		if p.PadToMultipleOf != nil {
			t.Padding.Multiple = *p.PadToMultipleOf
		}
		if !isNull(p.Strategy) {
			var s string
			var fixed struct {
				Fixed int `json:"Fixed"`
			}
			switch {
			case json.Unmarshal(p.Strategy, &s) == nil && s == "BatchLongest":
			case json.Unmarshal(p.Strategy, &fixed) == nil && fixed.Fixed > 0:
				t.Padding.Length = fixed.Fixed
			default:
				return nil, fmt.Errorf("%w: padding.strategy %s", ErrFormat, p.Strategy)
			}
		}
	}
	return t, nil
}

// defaultPadID is the id of the first pad token the vocabulary has
// ([PAD], <pad>), else 0.
func (t *Tokenizer) defaultPadID() int64 {
	for _, tok := range []string{"[PAD]", "<pad>", "<|padding|>", "<|endoftext|>"} {
		if id, ok := t.TokenID(tok); ok {
			return id
		}
	}
	return 0
}

// TokenID returns the id of a token of the vocabulary or an added token.
func (t *Tokenizer) TokenID(tok string) (int64, bool) {
	for _, a := range t.added {
		if a.Content == tok {
			return a.ID, true
		}
	}
	if id, ok := t.model.id(tok); ok {
		return int64(id), true
	}
	return 0, false
}

// SpecialTokens is how many tokens the post-processor adds to one text
// (pair false) or to a pair of texts: 2 and 3 for BERT.
func (t *Tokenizer) SpecialTokens(pair bool) int { return t.post.added(pair) }

// VocabSize is the largest token id + 1.
func (t *Tokenizer) VocabSize() int { return t.size }

// Token returns the token of an id.
func (t *Tokenizer) Token(id int64) (string, bool) {
	s, ok := t.idToken[id]
	return s, ok
}

// Options override tokenizer.json's truncation and special tokens for one
// call.
type Options struct {
	// Truncation, when set, replaces tokenizer.json's.
	Truncation *Truncation
	// NoSpecialTokens leaves out the post-processor's special tokens.
	NoSpecialTokens bool
}

// Encode tokenizes one text with tokenizer.json's truncation.
func (t *Tokenizer) Encode(text string) (*Encoding, error) {
	return t.EncodeWith(text, nil, Options{})
}

// EncodePair tokenizes a pair of texts (a query and a passage for a
// cross-encoder) with tokenizer.json's truncation.
func (t *Tokenizer) EncodePair(a, b string) (*Encoding, error) {
	return t.EncodeWith(a, &b, Options{})
}

// EncodeWith tokenizes text, and pair when not nil, with opts.
func (t *Tokenizer) EncodeWith(text string, pair *string, opts Options) (*Encoding, error) {
	a, err := t.encodeSequence(text, 0)
	if err != nil {
		return nil, err
	}
	var b *Encoding
	if pair != nil {
		if b, err = t.encodeSequence(*pair, 1); err != nil {
			return nil, fmt.Errorf("pair: %w", err)
		}
	}
	tr := t.Truncation
	if opts.Truncation != nil {
		tr = opts.Truncation
	}
	if tr != nil && tr.MaxLength > 0 {
		extra := 0
		if !opts.NoSpecialTokens {
			extra = t.post.added(pair != nil)
		}
		if tr.MaxLength <= extra {
			return nil, fmt.Errorf("%w: max_length %d leaves no room beside the %d special tokens", ErrInput, tr.MaxLength, extra)
		}
		if err := truncate(a, b, tr, tr.MaxLength-extra); err != nil {
			return nil, err
		}
	}
	if opts.NoSpecialTokens {
		if b != nil {
			a = concat(a, b)
			if tpl, ok := t.post.(*template); ok && tpl.zeroTypes {
				clear(a.TypeIDs)
			}
		}
		return a, nil
	}
	return t.post.process(a, b), nil
}

func concat(a, b *Encoding) *Encoding {
	out := &Encoding{}
	for _, e := range []*Encoding{a, b} {
		out.IDs = append(out.IDs, e.IDs...)
		out.TypeIDs = append(out.TypeIDs, e.TypeIDs...)
		out.Tokens = append(out.Tokens, e.Tokens...)
		out.Special = append(out.Special, e.Special...)
	}
	return out
}

// truncate cuts a (and b) to n tokens in all, as the tokenizers library
// does: longest_first gives the shorter sequence its length up to half of
// n and the longer the rest.
func truncate(a, b *Encoding, tr *Truncation, n int) error {
	if b == nil {
		if tr.Strategy == "only_second" {
			if a.Len() > n {
				return fmt.Errorf("%w: truncation only_second of a single text of %d tokens (at most %d)", ErrInput, a.Len(), n)
			}
			return nil
		}
		a.truncate(n, tr.Left)
		return nil
	}
	if a.Len()+b.Len() <= n {
		return nil
	}
	switch tr.Strategy {
	case "only_first", "only_second":
		cut, other := a, b
		if tr.Strategy == "only_second" {
			cut, other = b, a
		}
		if other.Len() >= n {
			return fmt.Errorf("%w: truncation %s: the other text alone has %d tokens (at most %d in all)", ErrInput, tr.Strategy, other.Len(), n)
		}
		cut.truncate(n-other.Len(), tr.Left)
		return nil
	}
	n1, n2 := a.Len(), b.Len()
	swap := n1 > n2
	if swap {
		n1, n2 = n2, n1
	}
	if n1 > n {
		n2 = n1
	} else {
		n2 = max(n1, n-n1)
	}
	if n1+n2 > n {
		n1 = n / 2
		n2 = n1 + n%2
	}
	if swap {
		n1, n2 = n2, n1
	}
	a.truncate(n1, tr.Left)
	b.truncate(n2, tr.Left)
	return nil
}

// encodeSequence tokenizes one text without special tokens: added tokens
// split out of the raw text, the rest normalized, pre-tokenized and run
// through the model.
func (t *Tokenizer) encodeSequence(text string, typ int64) (*Encoding, error) {
	if len(text) > MaxTextBytes {
		return nil, fmt.Errorf("%w: text of %d bytes (at most %d)", ErrInput, len(text), MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: text is not valid UTF-8", ErrInput)
	}
	enc := &Encoding{}
	for _, seg := range t.splitAdded(text) {
		if seg.added != nil {
			enc.add(seg.added.ID, seg.added.Content, typ, false)
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		words := []string{s}
		if t.pre != nil {
			words = t.pre.split(s)
		}
		for _, w := range words {
			if w == "" {
				continue
			}
			for _, tok := range t.model.tokenize(w) {
				enc.add(int64(tok.id), tok.text, typ, false)
			}
		}
	}
	return enc, nil
}

type segment struct {
	text  string
	added *addedToken
}

// splitAdded splits text around the added tokens it holds (leftmost
// first, the longest at a place), with the whitespace beside an lstrip or
// rstrip token dropped.
func (t *Tokenizer) splitAdded(text string) []segment {
	if len(t.added) == 0 {
		return []segment{{text: text}}
	}
	var out []segment
	start := 0 // start of the text not yet emitted
	for i := 0; i < len(text); {
		if !t.addedFirst[text[i]] {
			i++
			continue
		}
		var hit *addedToken
		for j := range t.added {
			a := &t.added[j]
			if strings.HasPrefix(text[i:], a.Content) && (!a.SingleWord || singleWord(text, i, i+len(a.Content))) {
				hit = a
				break
			}
		}
		if hit == nil {
			_, n := utf8.DecodeRuneInString(text[i:])
			i += n
			continue
		}
		before := text[start:i]
		if hit.LStrip {
			before = strings.TrimRightFunc(before, isWhitespace)
		}
		if before != "" {
			out = append(out, segment{text: before})
		}
		out = append(out, segment{added: hit})
		i += len(hit.Content)
		if hit.RStrip {
			rest := strings.TrimLeftFunc(text[i:], isWhitespace)
			i = len(text) - len(rest)
		}
		start = i
	}
	if start < len(text) {
		out = append(out, segment{text: text[start:]})
	}
	return out
}

// singleWord reports whether text[i:j] is not inside a word.
func singleWord(text string, i, j int) bool {
	if i > 0 {
		r, _ := utf8.DecodeLastRuneInString(text[:i])
		if isWordChar(r) {
			return false
		}
	}
	if j < len(text) {
		r, _ := utf8.DecodeRuneInString(text[j:])
		if isWordChar(r) {
			return false
		}
	}
	return true
}

// Batch is a padded batch of encodings, row after row.
type Batch struct {
	Rows, Len                        int
	IDs, AttentionMask, TokenTypeIDs []int64
}

// Pad pads encodings into one batch: to p.Length when set, else to the
// longest; rounded up to p.Multiple.
func Pad(encs []*Encoding, p Padding) Batch {
	n := p.Length
	for _, e := range encs {
		n = max(n, e.Len())
	}
	if p.Multiple > 1 && n%p.Multiple != 0 {
		n += p.Multiple - n%p.Multiple
	}
	b := Batch{Rows: len(encs), Len: n,
		IDs: make([]int64, len(encs)*n), AttentionMask: make([]int64, len(encs)*n), TokenTypeIDs: make([]int64, len(encs)*n)}
	for r, e := range encs {
		off := r * n
		if p.Left {
			off += n - e.Len()
		}
		copy(b.IDs[off:], e.IDs)
		copy(b.TokenTypeIDs[off:], e.TypeIDs)
		for i := range e.Len() {
			b.AttentionMask[off+i] = 1
		}
		pads := n - e.Len()
		poff := r*n + e.Len()
		if p.Left {
			poff = r * n
		}
		for i := range pads {
			b.IDs[poff+i] = p.ID
			b.TokenTypeIDs[poff+i] = p.TypeID
		}
	}
	return b
}

// Decode turns ids back into text with the tokenizer's decoder, leaving
// out special tokens when skipSpecial. An id outside the vocabulary is an
// error.
func (t *Tokenizer) Decode(ids []int64, skipSpecial bool) (string, error) {
	if t.decoderErr != nil {
		return "", t.decoderErr
	}
	toks := make([]string, 0, len(ids))
	for i, id := range ids {
		tok, ok := t.idToken[id]
		if !ok {
			return "", fmt.Errorf("%w: id %d (position %d) is not in the vocabulary", ErrInput, id, i)
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, tok)
	}
	if t.decoder == nil {
		return strings.Join(toks, " "), nil
	}
	return t.decoder.decode(toks), nil
}
