package tokenizer

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// model turns one word into tokens (tokenizer.json "model").
type model interface {
	tokenize(word string) []token
	id(tok string) (int, bool)
	// tokens maps every id of the vocabulary to its token.
	tokens() map[int]string
}

type token struct {
	id   int
	text string
}

// vocab is a token-to-id table.
type vocab map[string]int

func (v vocab) id(tok string) (int, bool) {
	id, ok := v[tok]
	return id, ok
}

func (v vocab) tokens() map[int]string {
	out := make(map[int]string, len(v))
	for tok, id := range v {
		out[id] = tok
	}
	return out
}

func parseModel(r json.RawMessage) (model, error) {
	typ, err := typeOf(r, "model")
	if err != nil {
		return nil, err
	}
	if typ == "" {
		// older files leave the type out
		var probe map[string]json.RawMessage
		json.Unmarshal(r, &probe)
		switch {
		case probe["merges"] != nil:
			typ = "BPE"
		case probe["continuing_subword_prefix"] != nil || probe["max_input_chars_per_word"] != nil:
			typ = "WordPiece"
		}
	}
	switch typ {
	case "WordPiece":
		return parseWordPiece(r)
	case "BPE":
		return parseBPE(r)
	case "":
		return nil, fmt.Errorf("%w: model.type is missing", ErrFormat)
	}
	return nil, fmt.Errorf("%w: model.type %q is not supported (WordPiece and BPE are)", ErrFormat, typ)
}

// checkVocab refuses negative or repeated ids.
func checkVocab(v vocab) error {
	seen := make(map[int]string, len(v))
	for tok, id := range v {
		if id < 0 {
			return fmt.Errorf("%w: model.vocab: token %q has id %d", ErrFormat, tok, id)
		}
		if other, dup := seen[id]; dup {
			return fmt.Errorf("%w: model.vocab: tokens %q and %q have the same id %d", ErrFormat, other, tok, id)
		}
		seen[id] = tok
	}
	return nil
}

// wordPiece is BERT's model: each word split greedily into the longest
// pieces of the vocabulary, pieces after the first with the continuing
// prefix; a word that cannot be split, or is longer than maxChars, is the
// unknown token.
type wordPiece struct {
	vocab
	unk      token
	prefix   string
	maxChars int
}

func parseWordPiece(r json.RawMessage) (model, error) {
	v := struct {
		Vocab    vocab   `json:"vocab"`
		Unk      string  `json:"unk_token"`
		Prefix   *string `json:"continuing_subword_prefix"`
		MaxChars *int    `json:"max_input_chars_per_word"`
	}{}
	if err := json.Unmarshal(r, &v); err != nil {
		return nil, fmt.Errorf("%w: model (WordPiece): %v", ErrFormat, err)
	}
	if len(v.Vocab) == 0 {
		return nil, fmt.Errorf("%w: model.vocab is empty", ErrFormat)
	}
	if err := checkVocab(v.Vocab); err != nil {
		return nil, err
	}
	wp := &wordPiece{vocab: v.Vocab, prefix: "##", maxChars: 100}
	if v.Prefix != nil {
		wp.prefix = *v.Prefix
	}
	if v.MaxChars != nil {
		wp.maxChars = *v.MaxChars
	}
	if v.Unk == "" {
		v.Unk = "[UNK]"
	}
	id, ok := v.Vocab[v.Unk]
	if !ok {
		return nil, fmt.Errorf("%w: model.unk_token %q is not in model.vocab", ErrFormat, v.Unk)
	}
	wp.unk = token{id, v.Unk}
	return wp, nil
}

func (wp *wordPiece) tokenize(word string) []token {
	if utf8.RuneCountInString(word) > wp.maxChars {
		return []token{wp.unk}
	}
	var out []token
	var key []byte
	for start := 0; start < len(word); {
		found := false
		for end := len(word); end > start; {
			key = key[:0]
			if start > 0 {
				key = append(key, wp.prefix...)
			}
			key = append(key, word[start:end]...)
			if id, ok := wp.vocab[string(key)]; ok {
				out = append(out, token{id, string(key)})
				start, found = end, true
				break
			}
			_, n := utf8.DecodeLastRuneInString(word[start:end])
			end -= n
		}
		if !found {
			return []token{wp.unk}
		}
	}
	return out
}

// bpe is a byte-pair-encoding model: each word starts as its characters
// and pairs are merged, the lowest-ranked merge first, until no merge
// applies; each symbol left is a token.
type bpe struct {
	vocab
	// merges maps a pair of token ids to its rank and the merged id.
	merges       map[[2]int]merge
	names        map[int]string
	unk          *token
	prefix       string
	suffix       string
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	cache        wordCache
}

type merge struct{ rank, id int }

// wordCache keeps the tokens of the words seen last (at most
// wordCacheSize, forgotten all at once when full).
type wordCache struct {
	mu    sync.RWMutex
	words map[string][]token
}

const (
	wordCacheSize = 10000
	// cachedWordBytes bounds the words kept.
	cachedWordBytes = 64
)

func (c *wordCache) get(w string) ([]token, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.words[w]
	return t, ok
}

func (c *wordCache) put(w string, t []token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.words == nil || len(c.words) >= wordCacheSize {
		c.words = make(map[string][]token)
	}
	c.words[w] = t
}

func parseBPE(r json.RawMessage) (model, error) {
	v := struct {
		Vocab        vocab           `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		Unk          *string         `json:"unk_token"`
		Prefix       *string         `json:"continuing_subword_prefix"`
		Suffix       *string         `json:"end_of_word_suffix"`
		FuseUnk      bool            `json:"fuse_unk"`
		ByteFallback bool            `json:"byte_fallback"`
		IgnoreMerges bool            `json:"ignore_merges"`
		Dropout      *float64        `json:"dropout"`
	}{}
	if err := json.Unmarshal(r, &v); err != nil {
		return nil, fmt.Errorf("%w: model (BPE): %v", ErrFormat, err)
	}
	if len(v.Vocab) == 0 {
		return nil, fmt.Errorf("%w: model.vocab is empty", ErrFormat)
	}
	if err := checkVocab(v.Vocab); err != nil {
		return nil, err
	}
	if v.Dropout != nil && *v.Dropout > 0 {
		return nil, fmt.Errorf("%w: model.dropout %g: BPE dropout is for training, not supported", ErrFormat, *v.Dropout)
	}
	m := &bpe{vocab: v.Vocab, names: v.Vocab.tokens(), fuseUnk: v.FuseUnk, byteFallback: v.ByteFallback, ignoreMerges: v.IgnoreMerges}
	if v.Prefix != nil {
		m.prefix = *v.Prefix
	}
	if v.Suffix != nil {
		m.suffix = *v.Suffix
	}
	if v.Unk != nil {
		id, ok := v.Vocab[*v.Unk]
		if !ok {
			return nil, fmt.Errorf("%w: model.unk_token %q is not in model.vocab", ErrFormat, *v.Unk)
		}
		m.unk = &token{id, *v.Unk}
	}
	// merges are "a b" strings (older files) or ["a", "b"] pairs
	var pairs [][2]string
	if !isNull(v.Merges) {
		var strs []string
		if err := json.Unmarshal(v.Merges, &strs); err == nil {
			for i, s := range strs {
				a, b, ok := strings.Cut(s, " ")
				if !ok || a == "" || b == "" || strings.Contains(b, " ") {
					return nil, fmt.Errorf("%w: model.merges[%d] %q: want two symbols separated by one space", ErrFormat, i, s)
				}
				pairs = append(pairs, [2]string{a, b})
			}
		} else if err := json.Unmarshal(v.Merges, &pairs); err != nil {
			return nil, fmt.Errorf("%w: model.merges: want strings \"a b\" or pairs [\"a\", \"b\"]", ErrFormat)
		}
	}
	m.merges = make(map[[2]int]merge, len(pairs))
	for i, p := range pairs {
		a, okA := v.Vocab[p[0]]
		b, okB := v.Vocab[p[1]]
		out := p[0] + strings.TrimPrefix(p[1], m.prefix)
		id, okOut := v.Vocab[out]
		switch {
		case !okA || !okB:
			return nil, fmt.Errorf("%w: model.merges[%d] %q %q: a token of the pair is not in model.vocab", ErrFormat, i, p[0], p[1])
		case !okOut:
			return nil, fmt.Errorf("%w: model.merges[%d] %q %q: the merged token %q is not in model.vocab", ErrFormat, i, p[0], p[1], out)
		}
		if _, dup := m.merges[[2]int{a, b}]; !dup {
			m.merges[[2]int{a, b}] = merge{i, id}
		}
	}
	return m, nil
}

// symbol is a piece of a word being merged: a doubly linked list over the
// word's characters. id is -1 for a character not in the vocabulary.
type symbol struct {
	id         int
	text       string
	prev, next int
	// gone marks a symbol merged into its left neighbour.
	gone bool
}

// pairItem is a candidate merge of symbol pos with the symbol after it.
type pairItem struct {
	rank, pos   int
	left, right int
}

type pairHeap []pairItem

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairItem)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (m *bpe) tokenize(word string) []token {
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return []token{{id, word}}
		}
	}
	if len(word) <= cachedWordBytes {
		if t, ok := m.cache.get(word); ok {
			return t
		}
	}
	out := m.merge(word)
	if len(word) <= cachedWordBytes {
		m.cache.put(word, out)
	}
	return out
}

func (m *bpe) merge(word string) []token {
	// the word's characters, the continuing prefix on all but the first
	// and the end-of-word suffix on the last
	syms := make([]symbol, 0, len(word))
	for i, r := range word {
		s := word[i : i+utf8.RuneLen(r)]
		if i > 0 && m.prefix != "" {
			s = m.prefix + s
		}
		if i+utf8.RuneLen(r) == len(word) && m.suffix != "" {
			s += m.suffix
		}
		id, ok := m.vocab[s]
		if !ok {
			id = -1
		}
		syms = append(syms, symbol{id: id, text: s, prev: len(syms) - 1, next: len(syms) + 1})
	}
	if len(syms) == 0 {
		return nil
	}
	syms[len(syms)-1].next = -1
	h := make(pairHeap, 0, len(syms))
	push := func(i int) {
		j := syms[i].next
		if j < 0 || syms[i].id < 0 || syms[j].id < 0 {
			return
		}
		if mg, ok := m.merges[[2]int{syms[i].id, syms[j].id}]; ok {
			heap.Push(&h, pairItem{rank: mg.rank, pos: i, left: syms[i].id, right: syms[j].id})
		}
	}
	for i := range syms {
		push(i)
	}
	for h.Len() > 0 {
		it := heap.Pop(&h).(pairItem)
		i := it.pos
		if syms[i].gone || syms[i].id != it.left {
			continue
		}
		j := syms[i].next
		if j < 0 || syms[j].id != it.right {
			continue
		}
		syms[i].id = m.merges[[2]int{it.left, it.right}].id
		syms[j].gone = true
		syms[i].next = syms[j].next
		if k := syms[j].next; k >= 0 {
			syms[k].prev = i
		}
		if p := syms[i].prev; p >= 0 {
			push(p)
		}
		push(i)
	}
	var out []token
	for i := 0; i >= 0; i = syms[i].next {
		if id := syms[i].id; id >= 0 {
			out = append(out, token{id, m.names[id]})
			continue
		}
		s := syms[i].text
		if m.byteFallback {
			ok := true
			var fb []token
			for _, c := range []byte(strings.TrimSuffix(strings.TrimPrefix(s, m.prefix), m.suffix)) {
				tok := fmt.Sprintf("<0x%02X>", c)
				id, found := m.vocab[tok]
				if !found {
					ok = false
					break
				}
				fb = append(fb, token{id, tok})
			}
			if ok {
				out = append(out, fb...)
				continue
			}
		}
		if m.unk != nil {
			if m.fuseUnk && len(out) > 0 && out[len(out)-1].id == m.unk.id {
				continue
			}
			out = append(out, *m.unk)
		}
		// without an unknown token the symbol is dropped, as the
		// tokenizers library does
	}
	return out
}

// cleanup undoes the spaces BERT's tokenization puts before punctuation
// and contractions (the WordPiece decoder's cleanup).
func cleanup(s string) string {
	r := strings.NewReplacer(" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'", " n't", "n't", " 'm", "'m",
		" 's", "'s", " 've", "'ve", " 're", "'re")
	return r.Replace(s)
}

// decoder joins tokens back into text (tokenizer.json "decoder").
type decoder interface {
	decode(toks []string) string
}

func parseDecoder(r json.RawMessage, field string) (decoder, error) {
	if isNull(r) {
		return nil, nil
	}
	typ, err := typeOf(r, field)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "WordPiece":
		v := struct {
			Prefix  *string `json:"prefix"`
			Cleanup *bool   `json:"cleanup"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		d := wordPieceDecoder{prefix: "##", cleanup: true}
		if v.Prefix != nil {
			d.prefix = *v.Prefix
		}
		if v.Cleanup != nil {
			d.cleanup = *v.Cleanup
		}
		return d, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "BPEDecoder":
		v := struct {
			Suffix *string `json:"suffix"`
		}{}
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, field, err)
		}
		d := bpeDecoder{"</w>"}
		if v.Suffix != nil {
			d.suffix = *v.Suffix
		}
		return d, nil
	}
	return nil, fmt.Errorf("%w: %s.type %q cannot decode (WordPiece, ByteLevel and BPEDecoder can)", ErrFormat, field, typ)
}

// wordPieceDecoder joins tokens with spaces, continuation pieces glued to
// the token before.
type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

func (d wordPieceDecoder) decode(toks []string) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			if rest, ok := strings.CutPrefix(t, d.prefix); ok {
				t = rest
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(t)
	}
	if d.cleanup {
		return cleanup(b.String())
	}
	return b.String()
}

// byteLevelDecoder maps the byte-to-unicode characters back to bytes;
// bytes that are not UTF-8 become U+FFFD.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decode(toks []string) string {
	var b []byte
	for _, t := range toks {
		for _, r := range t {
			if c, ok := runeByte[r]; ok {
				b = append(b, c)
			} else {
				b = utf8.AppendRune(b, r)
			}
		}
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// bpeDecoder turns end-of-word suffixes into spaces.
type bpeDecoder struct{ suffix string }

func (d bpeDecoder) decode(toks []string) string {
	var b strings.Builder
	for i, t := range toks {
		if rest, ok := strings.CutSuffix(t, d.suffix); ok {
			b.WriteString(rest)
			if i < len(toks)-1 {
				b.WriteByte(' ')
			}
			continue
		}
		b.WriteString(t)
	}
	return b.String()
}
