package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testCase is one case of testdata/cases.json: ids worked by hand from
// the published algorithms (each case says why).
type testCase struct {
	Tokenizer string  `json:"tokenizer"`
	Text      string  `json:"text"`
	Pair      *string `json:"pair"`
	MaxLength int     `json:"max_length"`
	IDs       []int64 `json:"ids"`
	TypeIDs   []int64 `json:"type_ids"`
	Why       string  `json:"why"`
}

func load(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestCases encodes the texts of testdata/cases.json (WordPiece and
// byte-level BPE tokenizers, single texts and pairs, truncation) and
// compares with the ids worked by hand.
func TestCases(t *testing.T) {
	b, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	toks := map[string]*Tokenizer{}
	for _, c := range cases {
		name := c.Tokenizer + " " + c.Text
		if c.Pair != nil {
			name += " | " + *c.Pair
		}
		t.Run(name, func(t *testing.T) {
			tok := toks[c.Tokenizer]
			if tok == nil {
				tok = load(t, c.Tokenizer)
				toks[c.Tokenizer] = tok
			}
			var opts Options
			if c.MaxLength > 0 {
				opts.Truncation = &Truncation{MaxLength: c.MaxLength, Strategy: "longest_first"}
			}
			enc, err := tok.EncodeWith(c.Text, c.Pair, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(enc.IDs, c.IDs) {
				t.Errorf("ids %v (tokens %q), want %v: %s", enc.IDs, enc.Tokens, c.IDs, c.Why)
			}
			types := c.TypeIDs
			if types == nil {
				types = make([]int64, len(c.IDs))
			}
			if !slices.Equal(enc.TypeIDs, types) {
				t.Errorf("type ids %v, want %v", enc.TypeIDs, types)
			}
		})
	}
}

// TestTemplateProcessing: BERT's special tokens written as a
// TemplateProcessing give what BertProcessing gives.
func TestTemplateProcessing(t *testing.T) {
	b, err := os.ReadFile("testdata/bert_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	tpl := `{"type": "TemplateProcessing",
	  "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
	  "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
	           {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
	  "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}`
	s := strings.Replace(string(b), `{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}`, tpl, 1)
	if s == string(b) {
		t.Fatal("post_processor not found in bert_tiny.json")
	}
	withTpl, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	bert := load(t, "bert_tiny.json")
	for _, p := range [][2]string{{"the fox", "jumped!"}, {"John Johanson's house", "the lazy dog."}} {
		want, err := bert.EncodePair(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := withTpl.EncodePair(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.IDs, want.IDs) || !slices.Equal(got.TypeIDs, want.TypeIDs) || !slices.Equal(got.Tokens, want.Tokens) {
			t.Errorf("%q: template gives %v %v, BertProcessing %v %v", p, got.IDs, got.TypeIDs, want.IDs, want.TypeIDs)
		}
	}
}

// TestPad pads a batch to its longest and to a fixed length, with the
// tokenizer's pad id, on the right and on the left.
func TestPad(t *testing.T) {
	tok := load(t, "roberta_tiny.json")
	var encs []*Encoding
	for _, s := range []string{"hello", "hello world"} {
		e, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		encs = append(encs, e)
	}
	for _, c := range []struct {
		name       string
		p          Padding
		ids, masks []int64
		n          int
	}{
		{"longest", tok.Padding, []int64{25, 8, 14, 26, 27, 25, 8, 14, 18, 26}, []int64{1, 1, 1, 1, 0, 1, 1, 1, 1, 1}, 5},
		{"fixed", Padding{Length: 6, ID: 27}, []int64{25, 8, 14, 26, 27, 27, 25, 8, 14, 18, 26, 27}, []int64{1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0}, 6},
		{"multiple", Padding{Multiple: 4, ID: 27}, []int64{25, 8, 14, 26, 27, 27, 27, 27, 25, 8, 14, 18, 26, 27, 27, 27}, []int64{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0}, 8},
		{"left", Padding{Left: true, ID: 27}, []int64{27, 25, 8, 14, 26, 25, 8, 14, 18, 26}, []int64{0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := Pad(encs, c.p)
			if b.Rows != 2 || b.Len != c.n || !slices.Equal(b.IDs, c.ids) || !slices.Equal(b.AttentionMask, c.masks) {
				t.Errorf("got %d x %d ids %v mask %v, want 2 x %d %v %v", b.Rows, b.Len, b.IDs, b.AttentionMask, c.n, c.ids, c.masks)
			}
		})
	}
}

// TestDecode turns ids back into text: WordPiece's continuation pieces
// glued and its cleanup of spaces before punctuation, byte-level BPE's
// bytes (a two-byte character split over two tokens), special tokens
// skipped or kept.
func TestDecode(t *testing.T) {
	bert, gpt := load(t, "bert_tiny.json"), load(t, "gpt2_tiny.json")
	for _, c := range []struct {
		tok         *Tokenizer
		ids         []int64
		skipSpecial bool
		want        string
	}{
		{bert, []int64{2, 5, 6, 9, 10, 16, 3}, true, "the quick jumps."},
		{bert, []int64{2, 5, 6, 9, 10, 16, 3}, false, "[CLS] the quick jumps. [SEP]"},
		{bert, []int64{2, 24, 25, 26, 22, 23, 27, 3}, true, "john johanson's house"},
		{gpt, []int64{14, 18, 0}, true, "hello world!"},
		{gpt, []int64{14, 20, 7, 5, 16, 1}, true, "helloworld"},
		{gpt, []int64{14, 20, 7, 5, 16, 1}, false, "hello<|endoftext|>world"},
		{gpt, []int64{21, 22, 14}, true, "éhello"},
		{gpt, []int64{21, 14}, true, "\uFFFDhello"},
	} {
		got, err := c.tok.Decode(c.ids, c.skipSpecial)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Decode(%v, %v) = %q, want %q", c.ids, c.skipSpecial, got, c.want)
		}
	}
	if _, err := bert.Decode([]int64{5, 9999}, true); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("unknown id: %v, want ErrInput naming it", err)
	}
}

// TestRoundTrip: byte-level BPE decodes what it encodes, whatever the
// text (every byte has a token in GPT-2-style vocabularies; here the tiny
// one covers the text's characters).
func TestRoundTrip(t *testing.T) {
	gpt := load(t, "gpt2_tiny.json")
	for _, s := range []string{"hello world!", "hello\n\nworld", "  hello  world  ", "he's", "é", "hello<|endoftext|>world"} {
		enc, err := gpt.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gpt.Decode(enc.IDs, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != s {
			t.Errorf("%q: encoded %v, decoded %q", s, enc.IDs, got)
		}
	}
}

// TestParseErrors: a tokenizer.json this package cannot run is an error
// naming the field.
func TestParseErrors(t *testing.T) {
	bert, err := os.ReadFile("testdata/bert_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, json, want string
	}{
		{"not JSON", `{"model": `, "bad tokenizer.json"},
		{"no model", `{"normalizer": null}`, "model: missing"},
		{"unigram", `{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}`, `model.type "Unigram" is not supported`},
		{"empty vocab", `{"model": {"type": "WordPiece", "vocab": {}}}`, "model.vocab is empty"},
		{"no unk", `{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"a": 0}}}`, `model.unk_token "[UNK]" is not in model.vocab`},
		{"duplicate id", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}`, "the same id 0"},
		{"bad merge", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}`, `model.merges[0] "a" "b": the merged token "ab" is not in model.vocab`},
		{"merge not a pair", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}}`, "model.merges[0]"},
		{"look-ahead regex", `{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)"}, "behavior": "Isolated"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`, "pre_tokenizer.pattern.Regex"},
		{"unknown normalizer", strings.Replace(string(bert), `"type": "BertNormalizer"`, `"type": "Precompiled"`, 1), `normalizer.type "Precompiled" is not supported`},
		{"unknown pre-tokenizer in sequence", strings.Replace(string(bert), `{"type": "BertPreTokenizer"}`, `{"type": "Sequence", "pretokenizers": [{"type": "Metaspace"}]}`, 1), `pre_tokenizer.pretokenizers[0].type "Metaspace"`},
		{"special id outside", strings.Replace(string(bert), `"sep": ["[SEP]", 3]`, `"sep": ["[SEP]", 300]`, 1), "special token \"[SEP]\" has id 300"},
		{"bad padding", strings.Replace(string(bert), `"padding": null`, `"padding": {"strategy": "Whatever"}`, 1), "padding.strategy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.json))
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want ErrFormat with %q", err, c.want)
			}
		})
	}
}

// TestInputErrors: text that is not UTF-8 or too long is refused.
func TestInputErrors(t *testing.T) {
	bert := load(t, "bert_tiny.json")
	for _, s := range []string{"caf\xe9", strings.Repeat("a", MaxTextBytes+1)} {
		if _, err := bert.Encode(s); !errors.Is(err, ErrInput) {
			t.Errorf("Encode(%.20q...): %v, want ErrInput", s, err)
		}
	}
	pair := "\xff"
	if _, err := bert.EncodeWith("ok", &pair, Options{}); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "pair") {
		t.Errorf("bad pair: %v, want ErrInput naming the pair", err)
	}
	dog := "dog"
	if _, err := bert.EncodeWith("the fox", &dog, Options{Truncation: &Truncation{MaxLength: 3}}); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "3 special tokens") {
		t.Errorf("max_length 3 for a pair: %v, want ErrInput naming the 3 special tokens", err)
	}
	// a long word is one [UNK] (max_input_chars_per_word), found quickly
	enc, err := bert.Encode(strings.Repeat("a", 200))
	if err != nil || !slices.Equal(enc.IDs, []int64{2, 1, 3}) {
		t.Errorf("long word: %v %v", enc, err)
	}
}

// TestLargeInput: a text of MaxTextBytes without a space (one word of a
// million characters) is tokenized, not refused or stuck: BPE merges with
// a heap, WordPiece gives up past max_input_chars_per_word.
func TestLargeInput(t *testing.T) {
	gpt, bert := load(t, "gpt2_tiny.json"), load(t, "bert_tiny.json")
	enc, err := gpt.Encode(strings.Repeat("l", MaxTextBytes))
	if err != nil {
		t.Fatal(err)
	}
	if enc.Len() != MaxTextBytes/2 || enc.IDs[0] != 11 {
		t.Errorf("%d tokens, first %v, want %d of ll (11)", enc.Len(), enc.IDs[:1], MaxTextBytes/2)
	}
	enc, err = bert.Encode(strings.Repeat("the ", MaxTextBytes/4))
	if err != nil || enc.Len() != MaxTextBytes/4+2 {
		t.Errorf("%v tokens, err %v, want %d", enc.Len(), err, MaxTextBytes/4+2)
	}
}

// TestConcurrentEncode: one Tokenizer serves many goroutines (the BPE
// word cache filling and being cleared meanwhile) with the same results.
func TestConcurrentEncode(t *testing.T) {
	gpt := load(t, "gpt2_tiny.json")
	texts := []string{"hello world!", "hello\n\nworld", "he's  hello", "world world"}
	want := make([][]int64, len(texts))
	for i, s := range texts {
		enc, err := gpt.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = enc.IDs
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range wordCacheSize/8 + 100 {
				k := (g + i) % len(texts)
				// a new word each time, so that the cache fills and is
				// cleared under the others
				gpt.Encode(fmt.Sprintf("w%d", g*wordCacheSize+i))
				enc, err := gpt.Encode(texts[k])
				if err != nil || !slices.Equal(enc.IDs, want[k]) {
					errs <- fmt.Errorf("%q: %v %v, want %v", texts[k], enc, err, want[k])
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
